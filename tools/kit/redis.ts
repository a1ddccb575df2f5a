import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { endProcess } from './children';
import { freePort } from './ports';
import { waitFor } from './time';

export interface RedisServerOptions {
  /** Keep data across restarts (appendonly, fsync always, like the compose file). Default false. */
  persistent?: boolean;
  port?: number;
  /** More redis-server arguments, e.g. ['--requirepass', 'x']. */
  extraArgs?: string[];
  /** Extra environment for redis-server (e.g. the clock shim's LD_PRELOAD). */
  env?: Record<string, string>;
  /** The data directory, when the caller owns one (it is removed by cleanup() all the same). Default: a new temp dir. */
  dir?: string;
  /** Where redis-server's stderr goes, chunk by chunk. Default: this process' stderr. */
  onStderr?: (text: string) => void;
  /** Sees every redis-server process as it starts (restarts too), e.g. to kill it if we exit first. */
  onSpawn?: (proc: ChildProcess) => void;
  /** Told whenever a redis-server process ends, whoever ended it. */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  /**
   * A process group of its own, so that Ctrl-C in a terminal reaches only us and we stop Redis
   * in our own order.
   */
  ownProcessGroup?: boolean;
}

/**
 * A redis-server of our own on a free port, in a temp dir of its own. Never the machine's shared
 * Redis on 6379: tests and tools must not depend on, or disturb, a server someone else runs.
 */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  private proc: ChildProcess | undefined;
  private readonly opts: RedisServerOptions;

  private constructor(port: number, opts: RedisServerOptions) {
    this.port = port;
    this.opts = opts;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'grinder-redis-'));
  }

  static async start(opts: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(opts.port ?? (await freePort()), opts);
    try {
      await server.startProcess();
    } catch (err) {
      await server.cleanup();
      throw err;
    }
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

  /** Starts redis-server again (same port, same data directory) after stop(); no-op while it runs. */
  async startProcess(): Promise<void> {
    if (this.proc) return;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', this.opts.persistent ? 'yes' : 'no');
    if (this.opts.persistent) args.push('--appendfsync', 'always');
    args.push(...(this.opts.extraArgs ?? []));
    const proc = spawn('redis-server', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...this.opts.env },
      detached: this.opts.ownProcessGroup ?? false,
    });
    let spawnError: Error | undefined;
    let stderr = '';
    proc.on('error', (err) => {
      spawnError = err;
    });
    const forward = this.opts.onStderr ?? ((text: string) => process.stderr.write(text));
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      forward(d.toString());
    });
    this.opts.onSpawn?.(proc);
    this.proc = proc;
    proc.once('exit', (code, signal) => {
      if (this.proc === proc) this.proc = undefined;
      this.opts.onExit?.(code, signal);
    });
    await waitFor(
      `redis-server on port ${this.port}`,
      async () => {
        if (spawnError) throw new Error(`could not start redis-server (is it on PATH? apt-get install redis-server): ${spawnError.message}`);
        if (this.proc !== proc) throw new Error(`redis-server exited at start: ${stderr.trim()}`);
        return (await redisPing(this.port)) ? true : undefined;
      },
      10_000,
    );
  }

  /**
   * Stops the server. SIGKILL loses nothing that appendfsync=always already wrote; with another
   * signal, `graceMs` bounds the wait before SIGKILL.
   */
  async stop(signal: NodeJS.Signals = 'SIGKILL', graceMs?: number): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    await endProcess(proc, signal, graceMs);
    this.proc = undefined;
  }

  /** Empties the data directory (Redis must be stopped): the next start has lost every byte. */
  wipe(): void {
    if (this.proc) throw new Error('wipe() needs a stopped Redis');
    // Same path, empty contents: a restart that lost every byte Redis had persisted.
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  async restart(opts: { loseData?: boolean } = {}): Promise<void> {
    await this.stop();
    if (opts.loseData) this.wipe();
    await this.startProcess();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** True when a Redis answers PING on 127.0.0.1:port (NOAUTH counts: it is up, just password-protected). */
export function redisPing(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    sock.setTimeout(timeoutMs, () => {
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
