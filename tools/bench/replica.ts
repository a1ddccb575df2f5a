import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Agent } from 'node:http';
import { freePort } from '../../test/support/ports';
import { REPO_ROOT } from '../../test/support/replica';
import { waitFor } from '../../test/support/wait';
import { monoNow } from '../chaos/processes';
import { keepAliveAgent, readyRole, get, type ReadyRole } from './http';
import { LineSplitter, parseRoleChange, type RoleRecord } from './role-log';

/**
 * A private copy of dist/ for this run. Other people rebuild dist/ (`npm test` starts with
 * rm -rf dist) while a ten-minute bench runs; replicas restarted between trials must run the
 * build the bench started with, not a missing or half-written one. It lives under .tmp/ (git
 * ignored) so that node_modules still resolves from the repository root.
 */
export class DistSnapshot {
  readonly dir: string;
  readonly mainJs: string;

  constructor() {
    const src = join(REPO_ROOT, 'dist');
    if (!existsSync(join(src, 'main.js'))) throw new Error('dist/main.js is missing: run `npm run build` first (npm run bench does)');
    this.dir = join(REPO_ROOT, '.tmp', `bench-${process.pid}`);
    mkdirSync(this.dir, { recursive: true });
    cpSync(src, join(this.dir, 'dist'), { recursive: true });
    cpSync(join(REPO_ROOT, 'package.json'), join(this.dir, 'package.json'));
    this.mainJs = join(this.dir, 'dist', 'main.js');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One `node dist/main.js` replica (like test/support/replica.ts, but running the snapshot), with
 * a keep-alive HTTP agent of its own for tight polling.
 */
export class BenchReplica {
  readonly name: string;
  readonly port: number;
  readonly agent: Agent;
  readonly exited: Promise<number | null>;
  /** Its "role changed" log lines (logged at info: only a replica started with GRINDER_LOG_LEVEL=info has them). */
  readonly roleChanges: RoleRecord[] = [];
  /** monoNow() when the process was seen to exit, null while it runs. */
  exitedMonoMs: number | null = null;
  private readonly proc: ChildProcess;
  private readonly output: string[] = [];
  private exitCode: number | null | undefined;

  private constructor(name: string, port: number, proc: ChildProcess) {
    this.name = name;
    this.port = port;
    this.proc = proc;
    this.agent = keepAliveAgent(2);
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitedMonoMs = monoNow();
        this.exitCode = code;
        this.agent.destroy();
        resolve(code ?? (signal ? -1 : null));
      });
    });
    const keep = (chunk: Buffer): void => {
      this.output.push(chunk.toString());
      if (this.output.length > 200) this.output.shift();
    };
    const lines = new LineSplitter();
    proc.stdout?.on('data', (chunk: Buffer) => {
      keep(chunk);
      for (const line of lines.push(chunk.toString())) {
        const r = parseRoleChange(line);
        if (r) this.roleChanges.push(r);
      }
    });
    proc.stderr?.on('data', keep);
  }

  /** Spawns a replica and waits until it answers /healthz; `track` sees it as soon as it exists. */
  static start(snapshot: DistSnapshot, name: string, env: Record<string, string>, track: (r: BenchReplica) => void, port?: number): Promise<BenchReplica> {
    return BenchReplica.run(snapshot.mainJs, name, env, track, port);
  }

  /** Like start(), for any script that reads GRINDER_METRICS_PORT and answers /healthz (the baseline elector). */
  static async run(script: string, name: string, env: Record<string, string>, track: (r: BenchReplica) => void, port?: number): Promise<BenchReplica> {
    const p = port ?? (await freePort());
    const proc = spawn(process.execPath, [script], {
      env: { PATH: process.env.PATH ?? '', GRINDER_METRICS_PORT: String(p), GRINDER_HTTP_HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = new BenchReplica(name, p, proc);
    track(r);
    await waitFor(
      `replica ${name} on port ${p} to answer /healthz`,
      async () => {
        if (!r.alive) throw new Error(`replica ${name} exited with ${String(r.exitCode)}: ${r.recentOutput()}`);
        const a = await get(r.agent, p, '/healthz', 1_000);
        return a.status > 0 ? true : undefined;
      },
      15_000,
      10,
    );
    return r;
  }

  get pid(): number {
    const pid = this.proc.pid;
    if (pid === undefined) throw new Error(`replica ${this.name} has no pid`);
    return pid;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  role(): Promise<ReadyRole> {
    return this.alive ? readyRole(this.agent, this.port) : Promise.resolve('down');
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(sig);
  }

  async stop(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.signal(sig);
    await this.exited;
  }

  recentOutput(): string {
    return this.output.join('').slice(-2_000);
  }
}
