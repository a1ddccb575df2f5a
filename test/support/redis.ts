import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { freePort } from './ports';
import { waitFor } from './wait';

export interface RedisServerOptions {
  /** Keep data across restarts (appendonly, like the compose file). Default false. */
  persistent?: boolean;
  port?: number;
  /** More redis-server arguments, e.g. ['--requirepass', 'x']. */
  extraArgs?: string[];
  /** Extra environment for redis-server (e.g. the clock shim's LD_PRELOAD). */
  env?: Record<string, string>;
}

/**
 * A redis-server of the test's own on a free port, in a temp dir of its own. Never the machine's
 * shared Redis on 6379: tests must not depend on, or disturb, a server someone else runs.
 */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  private proc: ChildProcess | undefined;
  private readonly persistent: boolean;
  private readonly extraArgs: string[];
  private readonly env: Record<string, string>;

  private constructor(port: number, persistent: boolean, extraArgs: string[], env: Record<string, string>) {
    this.port = port;
    this.persistent = persistent;
    this.extraArgs = extraArgs;
    this.env = env;
    this.dir = mkdtempSync(join(tmpdir(), 'grinder-redis-'));
  }

  static async start(opts: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(opts.port ?? (await freePort()), opts.persistent ?? false, opts.extraArgs ?? [], opts.env ?? {});
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined;
  }

  async startProcess(): Promise<void> {
    if (this.proc) return;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', this.persistent ? 'yes' : 'no');
    if (this.persistent) args.push('--appendfsync', 'always');
    args.push(...this.extraArgs);
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...this.env } });
    proc.on('error', (err) => {
      throw new Error(`could not start redis-server (is it on PATH? apt-get install redis-server): ${err.message}`);
    });
    this.proc = proc;
    proc.once('exit', () => {
      if (this.proc === proc) this.proc = undefined;
    });
    await waitFor(`redis-server on port ${this.port}`, async () => ((await redisPing(this.port)) ? true : undefined), 10_000);
  }

  /** Stops the server. SIGKILL loses nothing that appendfsync=always already wrote. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
    this.proc = undefined;
  }

  async restart(opts: { loseData?: boolean } = {}): Promise<void> {
    await this.stop();
    if (opts.loseData) {
      // Same path, empty contents: a restart that lost every byte Redis had persisted.
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true });
    }
    await this.startProcess();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** True when a Redis answers PING on 127.0.0.1:port (NOAUTH counts: it is up, just password-protected). */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    sock.setTimeout(500, () => {
      sock.destroy();
      resolve(false);
    });
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        sock.end();
        resolve(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'));
      }
    });
  });
}
