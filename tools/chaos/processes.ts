import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisPing } from '../../test/support/redis';
import { waitFor } from '../../test/support/wait';

/*
 * The processes a chaos run starts: one redis-server and N `node dist/main.js` replicas. Every
 * child is registered in one set so that whatever happens to the harness (an error, Ctrl-C, an
 * uncaught exception) a synchronous killAllChildren() can still reach each of them.
 */

export const REPO_ROOT = join(__dirname, '..', '..');
export const MAIN_JS = join(REPO_ROOT, 'dist', 'main.js');

/** The CLOCK_MONOTONIC the replicas log in (mono_ms): same clock, same process-independent origin. */
export const monoNow = (): number => Number(process.hrtime.bigint()) / 1e6;

const children = new Set<ChildProcess>();

function track(proc: ChildProcess): void {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
}

/** SIGCONT then SIGKILL every child still alive. Synchronous: usable from process.on('exit'). */
export function killAllChildren(): number {
  let n = 0;
  for (const proc of children) {
    if (proc.exitCode !== null || proc.signalCode !== null) continue;
    try {
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

/** A redis-server with appendonly persistence (fsync always) in a temp dir of its own. */
export class RedisProcess {
  readonly dir: string;
  private proc: ChildProcess | null = null;

  constructor(
    readonly port: number,
    /** Extra environment for redis-server (the clock shim's LD_PRELOAD). */
    private readonly env: Record<string, string> = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'grinder-chaos-redis-'));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', 'yes', '--appendfsync', 'always', '--loglevel', 'warning');
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...this.env } });
    let spawnError: Error | null = null;
    let stderr = '';
    proc.on('error', (err) => {
      spawnError = err;
    });
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    track(proc);
    this.proc = proc;
    proc.once('exit', () => {
      if (this.proc === proc) this.proc = null;
    });
    await waitFor(
      `redis-server on port ${this.port}`,
      async () => {
        if (spawnError) throw new Error(`could not start redis-server (is it on PATH?): ${(spawnError as Error).message}`);
        if (this.proc !== proc) throw new Error(`redis-server exited at start: ${stderr.trim()}`);
        return (await redisPing(this.port)) ? true : undefined;
      },
      10_000,
    );
  }

  /** SIGKILL: with appendfsync always nothing acknowledged is lost. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGKILL');
    await exited;
    this.proc = null;
  }

  /** Empties the data directory (call while stopped): the next start has lost every byte. */
  wipe(): void {
    if (this.proc) throw new Error('wipe() needs a stopped Redis');
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  async cleanup(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface ReplicaSpec {
  /** The entry point to run (default dist/main.js). */
  mainJs?: string;
  instance: string;
  incarnation: number;
  port: number;
  env: Record<string, string>;
}

/** One incarnation of a replica: `node dist/main.js`, its JSON log lines kept with their raw text. */
export class ReplicaProcess {
  readonly instance: string;
  readonly incarnation: number;
  readonly port: number;
  readonly startedMonoMs: number;
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  /** Set just before the harness sends SIGKILL. */
  killedMonoMs: number | null = null;
  exitMonoMs: number | null = null;
  exitCode: number | null = null;
  stopped = false;
  /** Resolves once the process exited AND its stdout/stderr are drained. */
  readonly closed: Promise<void>;
  private readonly proc: ChildProcess;

  constructor(spec: ReplicaSpec) {
    this.instance = spec.instance;
    this.incarnation = spec.incarnation;
    this.port = spec.port;
    this.startedMonoMs = monoNow();
    this.proc = spawn(process.execPath, [spec.mainJs ?? MAIN_JS], {
      env: {
        PATH: process.env.PATH ?? '',
        GRINDER_METRICS_PORT: String(spec.port),
        GRINDER_HTTP_HOST: '127.0.0.1',
        ...spec.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(this.proc);
    this.proc.once('exit', (code) => {
      this.exitMonoMs = monoNow();
      this.exitCode = code;
    });
    this.closed = new Promise((resolve) => this.proc.once('close', () => resolve()));
    let pending = '';
    this.proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.raw.push(line);
        try {
          const parsed: unknown = JSON.parse(line);
          if (parsed !== null && typeof parsed === 'object') this.lines.push(parsed as Record<string, unknown>);
        } catch {
          // not JSON: kept in raw only
        }
      }
    });
    this.proc.stderr?.on('data', (chunk: Buffer) => this.raw.push(`[stderr] ${chunk.toString().trimEnd()}`));
  }

  get alive(): boolean {
    return this.exitMonoMs === null;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await waitFor(
      `replica ${this.instance} on port ${this.port} to answer /healthz`,
      async () => {
        if (!this.alive) throw new Error(`replica ${this.instance} exited with ${String(this.exitCode)}: ${this.raw.slice(-5).join(' | ')}`);
        const r = await httpGet(this.port, '/healthz', 500);
        return r !== null ? true : undefined;
      },
      timeoutMs,
      25,
    );
  }

  /** The role /readyz reports, or 'down' when the process does not answer in time. */
  async readyRole(timeoutMs = 500): Promise<string> {
    if (!this.alive || this.stopped) return 'down';
    const r = await httpGet(this.port, '/readyz', timeoutMs);
    if (!r) return 'down';
    try {
      return (JSON.parse(r.body) as { role: string }).role;
    } catch {
      return 'down';
    }
  }

  /** SIGKILL, noting the time first: the leadership (if any) ends at that moment. */
  async kill(): Promise<number> {
    if (this.stopped) this.cont();
    const at = monoNow();
    if (this.alive) {
      this.killedMonoMs = at;
      this.proc.kill('SIGKILL');
    }
    await this.closed;
    return at;
  }

  stop(): void {
    if (!this.alive) return;
    this.proc.kill('SIGSTOP');
    this.stopped = true;
  }

  cont(): void {
    if (!this.alive) return;
    this.proc.kill('SIGCONT');
    this.stopped = false;
  }
}

export async function httpGet(port: number, path: string, timeoutMs: number): Promise<{ status: number; body: string } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  }
}

/** Runs a short command (an operator's `grinder <command>`) to its end; killed after `timeoutMs`. */
export function runCommand(
  file: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(file, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    track(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${err.message}` });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
