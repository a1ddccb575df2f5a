import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { Agent } from 'node:http';
import { join } from 'node:path';
import { endProcess } from './children';
import { httpGet, keepAliveAgent, readyRole, type HttpAnswer } from './http';
import { parseRoleChange, roleChangeOf, type RoleRecord } from './leadership';
import { freePort } from './ports';
import { monoNow, waitFor } from './time';

export const REPO_ROOT = join(__dirname, '..', '..');
export const MAIN_JS = join(REPO_ROOT, 'dist', 'main.js');

/** How much of its recent output a replica keeps for an error message when it keeps nothing else. */
const TAIL_LINES = 200;

export interface ReplicaOptions {
  /** What error messages and records call it (the chaos instance id, a bench name). Default 'replica'. */
  name?: string;
  /** Which restart of `name` this is: 0 for the first process, 1 after its first restart, ... */
  incarnation?: number;
  /** Its environment besides PATH and the HTTP listener's host and port. */
  env?: Record<string, string>;
  /**
   * Another build's entry point (default dist/main.js), e.g. to show a test catching an older one,
   * or any script that reads GRINDER_METRICS_PORT and answers /healthz.
   */
  mainJs?: string;
  port?: number;
  args?: string[];
  /** Node options before the script, e.g. ['--require', fixture]. */
  nodeArgs?: string[];
  /**
   * Keep every log line in memory (`logs`, `output`; the default). Without it only the role
   * changes and the last lines are kept, and only role-change lines are parsed: a long run stays
   * small and a busy harness does not spend its time on JSON.parse.
   */
  retainOutput?: boolean;
  /** Also append its stdout and stderr to this file, for a person to read. */
  logFile?: string;
  /** Probe it over a keep-alive agent of its own (`agent`), for tight polls; destroyed when it exits. */
  keepAlive?: boolean;
  /** A process group of its own, so that Ctrl-C in a terminal reaches only us and we stop it in our own order. */
  ownProcessGroup?: boolean;
  /** Sees the process as soon as it exists, e.g. to kill it if we exit first. */
  onSpawn?: (proc: ChildProcess) => void;
}

/** Splits a stream of chunks into whole lines; the last, unfinished line waits for the next chunk. */
export class LineSplitter {
  private pending = '';

  push(chunk: string): string[] {
    this.pending += chunk;
    const parts = this.pending.split('\n');
    this.pending = parts.pop() ?? '';
    return parts;
  }
}

/** One `node dist/main.js` process, as containers and scripts run it, with its JSON log lines kept. */
export class Replica {
  readonly name: string;
  readonly incarnation: number;
  readonly port: number;
  /** monoNow() at the spawn. */
  readonly startedMonoMs: number;
  /** Its stdout's JSON lines (with retainOutput). */
  readonly logs: Record<string, unknown>[] = [];
  /** Its stderr chunks, and stdout lines that were not JSON (with retainOutput). */
  readonly stderr: string[] = [];
  /** Lines on stdout that were not JSON (also kept in `stderr`): the log stream must have none. */
  readonly stdoutNonJson: string[] = [];
  /** Every stdout line and stderr chunk ("[stderr] ..."), in arrival order (with retainOutput). */
  readonly output: string[] = [];
  /** Its "role changed" lines (logged at info: only a replica run with GRINDER_LOG_LEVEL=info has them). */
  readonly roleChanges: RoleRecord[] = [];
  /** The keep-alive agent of its probes (keepAlive only). */
  readonly agent: Agent | undefined;
  /** Resolves with the exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** Resolves once the process exited and its stdout and stderr are drained. */
  readonly closed: Promise<void>;
  /** undefined while it runs. */
  exitCode: number | null | undefined;
  /** The signal that ended the process, if one did. */
  exitSignal: NodeJS.Signals | null = null;
  /** monoNow() when the exit was seen; null while it runs. */
  exitMonoMs: number | null = null;
  /** monoNow() just before kill() sent SIGKILL: any leadership it held ended then. */
  killedMonoMs: number | null = null;
  /** Stopped by pause() (SIGSTOP) and not resumed yet. */
  paused = false;
  private readonly proc: ChildProcess;
  private readonly tail: string[] = [];

  private constructor(port: number, opts: ReplicaOptions) {
    this.port = port;
    this.name = opts.name ?? 'replica';
    this.incarnation = opts.incarnation ?? 0;
    this.agent = opts.keepAlive ? keepAliveAgent(2) : undefined;
    this.startedMonoMs = monoNow();
    this.proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.mainJs ?? MAIN_JS, ...(opts.args ?? [])], {
      env: {
        PATH: process.env.PATH ?? '',
        GRINDER_METRICS_PORT: String(port),
        GRINDER_HTTP_HOST: '127.0.0.1',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.ownProcessGroup ?? false,
    });
    opts.onSpawn?.(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitMonoMs = monoNow();
        this.exitCode = code;
        this.exitSignal = signal;
        this.agent?.destroy();
        resolve(code);
      });
    });
    this.closed = new Promise((resolve) => this.proc.once('close', () => resolve()));
    if (opts.logFile) {
      const file = createWriteStream(opts.logFile, { flags: 'a' });
      this.proc.stdout?.pipe(file);
      this.proc.stderr?.pipe(file);
    }
    const retain = opts.retainOutput ?? true;
    const lines = new LineSplitter();
    this.proc.stdout?.on('data', (chunk: Buffer) => {
      for (const line of lines.push(chunk.toString())) {
        this.keep(line, retain);
        if (retain) this.readLogLine(line);
        else {
          const change = parseRoleChange(line);
          if (change) this.roleChanges.push(change);
        }
      }
    });
    this.proc.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      this.keep(`[stderr] ${text.trimEnd()}`, retain);
      if (retain) this.stderr.push(text);
    });
  }

  private keep(line: string, retain: boolean): void {
    if (retain) this.output.push(line);
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  private readLogLine(line: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed === 'object' && parsed !== null) {
      const log = parsed as Record<string, unknown>;
      this.logs.push(log);
      const change = roleChangeOf(log);
      if (change) this.roleChanges.push(change);
    } else {
      this.stderr.push(line);
      this.stdoutNonJson.push(line);
    }
  }

  /** Spawns a replica without waiting for it (see waitHealthy). */
  static spawn(opts: ReplicaOptions & { port: number }): Replica {
    return new Replica(opts.port, opts);
  }

  /** Spawns a replica (on a free port unless given one) and waits until its HTTP server answers. */
  static async start(opts: ReplicaOptions = {}): Promise<Replica> {
    const replica = Replica.spawn({ ...opts, port: opts.port ?? (await freePort()) });
    await replica.waitHealthy();
    return replica;
  }

  /** Waits until /healthz answers at all; fails at once, with its last output, if the process exits. */
  async waitHealthy(timeoutMs = 15_000, intervalMs = 20): Promise<void> {
    await waitFor(
      `${this.name} on port ${this.port} to answer /healthz`,
      async () => {
        if (!this.alive) throw new Error(`${this.name} exited with ${String(this.exitCode)}: ${this.recentOutput()}`);
        const r = await httpGet(this.port, '/healthz', { timeoutMs: 1_000, agent: this.agent });
        return r.status > 0 ? true : undefined;
      },
      timeoutMs,
      intervalMs,
    );
  }

  get pid(): number {
    const pid = this.proc.pid;
    if (pid === undefined) throw new Error(`${this.name} has no pid: it never started`);
    return pid;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  get(path: string, timeoutMs = 2_000): Promise<HttpAnswer> {
    return httpGet(this.port, path, { timeoutMs, agent: this.agent });
  }

  /** The role /readyz reports, or 'down' when the process is dead, paused or does not answer in time. */
  async readyRole(timeoutMs = 2_000): Promise<string> {
    if (!this.alive || this.paused) return 'down';
    return readyRole(this.port, { timeoutMs, agent: this.agent });
  }

  /** Closes our end of the replica's stdout, as a log reader that went away would. */
  closeStdout(): void {
    this.proc.stdout?.destroy();
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(sig);
  }

  /** Sends `sig` and waits for the exit; with `graceMs`, SIGKILL if it is still running by then. */
  async stop(sig: NodeJS.Signals = 'SIGKILL', graceMs?: number): Promise<number | null> {
    if (this.alive) await endProcess(this.proc, sig, graceMs);
    return this.exited;
  }

  /** SIGKILL, noting the time first (resuming a paused process first); returns that time. */
  async kill(): Promise<number> {
    if (this.paused) this.resume();
    const at = monoNow();
    if (this.alive) {
      this.killedMonoMs = at;
      this.proc.kill('SIGKILL');
    }
    await this.closed;
    return at;
  }

  /** SIGSTOP: a process that stops answering, and whose timers stop, without dying. */
  pause(): void {
    if (!this.alive) return;
    this.proc.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.alive) return;
    this.proc.kill('SIGCONT');
    this.paused = false;
  }

  /** Log lines whose `msg` equals `msg`. */
  logsWith(msg: string): Record<string, unknown>[] {
    return this.logs.filter((l) => l.msg === msg);
  }

  /** The last of its output, for an error message. */
  recentOutput(): string {
    return this.tail.join('\n').slice(-2_000);
  }
}
