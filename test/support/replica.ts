import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './ports';
import { waitFor } from './wait';

export const REPO_ROOT = join(__dirname, '..', '..');
export const MAIN_JS = join(REPO_ROOT, 'dist', 'main.js');

export interface HttpAnswer {
  status: number;
  body: string;
  contentType: string | null;
}

export interface ReplicaOptions {
  env?: Record<string, string>;
  /** Another build's entry point (default dist/main.js), e.g. to show a test catching an older one. */
  mainJs?: string;
  port?: number;
  args?: string[];
  /** Node options before the script, e.g. ['--require', fixture]. */
  nodeArgs?: string[];
}

/** One `node dist/main.js` process, as containers and scripts run it, with its JSON log lines kept. */
export class Replica {
  readonly port: number;
  readonly logs: Record<string, unknown>[] = [];
  readonly stderr: string[] = [];
  /** Lines on stdout that were not JSON (also kept in `stderr`, as before): the log stream must have none. */
  readonly stdoutNonJson: string[] = [];
  private readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  /** The signal that ended the process, if one did. */
  exitSignal: NodeJS.Signals | null = null;

  private constructor(port: number, proc: ChildProcess) {
    this.port = port;
    this.proc = proc;
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve(code);
      });
    });
    let pending = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.stderr.push(line);
          this.stdoutNonJson.push(line);
        }
      }
    });
    proc.stderr?.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
  }

  /** Spawns a replica and waits until its HTTP server answers. */
  static async start(opts: ReplicaOptions = {}): Promise<Replica> {
    const port = opts.port ?? (await freePort());
    const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.mainJs ?? MAIN_JS, ...(opts.args ?? [])], {
      env: {
        PATH: process.env.PATH ?? '',
        GRINDER_METRICS_PORT: String(port),
        GRINDER_HTTP_HOST: '127.0.0.1',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const replica = new Replica(port, proc);
    await waitFor(
      `replica on port ${port} to answer /healthz`,
      async () => {
        if (replica.exitCode !== undefined) {
          throw new Error(`replica exited with ${replica.exitCode}: ${replica.stderr.join('')}`);
        }
        const r = await replica.get('/healthz');
        return r.status > 0 ? true : undefined;
      },
      15_000,
    );
    return replica;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  async get(path: string, init: RequestInit = {}): Promise<HttpAnswer> {
    const res = await fetch(`http://127.0.0.1:${this.port}${path}`, {
      ...init,
      signal: AbortSignal.timeout(2_000),
    });
    return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') };
  }

  /** The role /readyz reports, or 'down' when the process does not answer. */
  async readyRole(): Promise<string> {
    try {
      const r = await this.get('/readyz');
      return (JSON.parse(r.body) as { role: string }).role;
    } catch {
      return 'down';
    }
  }

  /** Closes our end of the replica's stdout, as a log reader that went away would. */
  closeStdout(): void {
    this.proc.stdout?.destroy();
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(sig);
  }

  async stop(sig: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    this.signal(sig);
    return this.exited;
  }

  /** Log lines whose `msg` equals `msg`. */
  logsWith(msg: string): Record<string, unknown>[] {
    return this.logs.filter((l) => l.msg === msg);
  }
}
