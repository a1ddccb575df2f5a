import { connect, createServer, type Server, type Socket } from 'node:net';

/*
 * A TCP proxy between one replica and Redis that the chaos harness and the fault tests control.
 *
 * - latency: every chunk, in both directions, is delivered N ms after it arrived. Order is kept:
 *   a chunk never overtakes an earlier one, even when the latency is lowered meanwhile.
 * - cut: every open connection is reset (both sides see the connection die) and every new
 *   connection is reset as soon as it is accepted, until heal(). What a replica sees when a
 *   firewall rejects its packets or Redis' host reboots.
 * - partition: bytes stop flowing (new connections are accepted but not forwarded) and are held,
 *   in order, until heal() delivers them all. What TCP does across a network partition shorter than
 *   its retransmission timeout: commands sent during the partition reach Redis late, after the
 *   sender gave up on them. The nasty case for a lease: stale renewals and stale writes arrive.
 * - heal: back to normal (latency stays as set; set it to 0 separately).
 */

export type ProxyMode = 'open' | 'cut' | 'partition';

export interface ChaosProxyOptions {
  targetHost?: string;
  targetPort: number;
  /** Port to listen on (127.0.0.1); default: one the kernel picks. */
  port?: number;
}

export interface ProxyStats {
  /** Connections accepted since start. */
  accepted: number;
  /** Connections reset because the proxy was cut. */
  reset: number;
  /** Connections open now. */
  open: number;
}

/** A chunk, a FIN, or a reset (the other side died): all delivered in the order they happened. */
type Item = { kind: 'data'; chunk: Buffer; dueAt: number } | { kind: 'end'; dueAt: number } | { kind: 'reset'; dueAt: number };

/** One direction of one connection: a queue that releases items in order when they are due. */
class Lane {
  private readonly queue: Item[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ended = false;

  constructor(
    private readonly proxy: ChaosProxy,
    private readonly dest: () => Socket | null,
    private readonly onReset: () => void,
  ) {}

  push(item: Item): void {
    if (this.ended) return;
    this.queue.push(item);
    this.pump();
  }

  /** Delivers every item that is due, in order; waits for the head otherwise. */
  pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const dest = this.dest();
    if (!dest || this.proxy.mode !== 'open') return; // held until the upstream exists / heal()
    const now = performance.now();
    while (this.queue.length > 0) {
      const head = this.queue[0] as Item;
      if (head.dueAt > now) {
        this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(head.dueAt - now)));
        return;
      }
      this.queue.shift();
      if (head.kind === 'reset') {
        this.ended = true;
        this.onReset();
        return;
      }
      if (dest.destroyed) return;
      if (head.kind === 'data') {
        dest.write(head.chunk);
      } else {
        this.ended = true;
        dest.end();
        return;
      }
    }
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
  }
}

class Connection {
  upstream: Socket | null = null;
  readonly toUpstream: Lane;
  readonly toClient: Lane;
  private closed = false;

  constructor(
    private readonly proxy: ChaosProxy,
    readonly client: Socket,
  ) {
    const reset = (): void => this.destroy(true);
    this.toUpstream = new Lane(proxy, () => (this.upstream && !this.upstream.connecting ? this.upstream : null), reset);
    this.toClient = new Lane(proxy, () => this.client, reset);
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.toUpstream.push({ kind: 'data', chunk, dueAt: this.proxy.dueAt() }));
    client.on('end', () => this.toUpstream.push({ kind: 'end', dueAt: this.proxy.dueAt() }));
    // The replica died or reset: Redis learns it after what the replica sent before.
    client.on('error', () => this.toUpstream.push({ kind: 'reset', dueAt: this.proxy.dueAt() }));
    client.on('close', () => this.closedSide());
  }

  /** Opens the upstream connection (deferred while partitioned, as a SYN would be lost). */
  connectUpstream(host: string, port: number): void {
    if (this.upstream || this.closed) return;
    const up = connect({ host, port, allowHalfOpen: true });
    this.upstream = up;
    up.setNoDelay(true);
    up.on('connect', () => this.toUpstream.pump());
    up.on('data', (chunk: Buffer) => this.toClient.push({ kind: 'data', chunk, dueAt: this.proxy.dueAt() }));
    up.on('end', () => this.toClient.push({ kind: 'end', dueAt: this.proxy.dueAt() }));
    // Redis refused or reset: the replica learns it by a reset, after the bytes that came before.
    up.on('error', () => this.toClient.push({ kind: 'reset', dueAt: this.proxy.dueAt() }));
    up.on('close', () => this.closedSide());
  }

  /** Both sockets fully closed (each side ended both ways): the connection is over. */
  private closedSide(): void {
    if (this.client.destroyed && (!this.upstream || this.upstream.destroyed)) this.destroy(false);
  }

  pump(): void {
    this.toUpstream.pump();
    this.toClient.pump();
  }

  /** Closes both sides. reset=true sends an RST to the client instead of a FIN. */
  destroy(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.toUpstream.clear();
    this.toClient.clear();
    for (const s of [this.client, this.upstream]) {
      if (!s || s.destroyed) continue;
      if (reset) s.resetAndDestroy();
      else s.destroy();
    }
    this.proxy.forget(this);
  }
}

export class ChaosProxy {
  readonly port: number;
  readonly targetHost: string;
  readonly targetPort: number;
  private readonly server: Server;
  private readonly conns = new Set<Connection>();
  private latency = 0;
  private currentMode: ProxyMode = 'open';
  private readonly counters = { accepted: 0, reset: 0 };

  private constructor(server: Server, port: number, targetHost: string, targetPort: number) {
    this.server = server;
    this.port = port;
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    server.on('connection', (sock) => this.onConnection(sock));
  }

  static async start(opts: ChaosProxyOptions): Promise<ChaosProxy> {
    // Half-open allowed, so a FIN travels through the delay queue like any byte.
    const server = createServer({ allowHalfOpen: true });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => {
        const addr = server.address();
        if (addr === null || typeof addr === 'string') reject(new Error('the proxy could not read its own port'));
        else resolve(addr.port);
      });
    });
    return new ChaosProxy(server, port, opts.targetHost ?? '127.0.0.1', opts.targetPort);
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  get latencyMs(): number {
    return this.latency;
  }

  get stats(): ProxyStats {
    return { ...this.counters, open: this.conns.size };
  }

  /** Delays every chunk, both directions, by `ms` from now on (0 = none). */
  setLatency(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency must be a number of ms >= 0, not ${ms}`);
    this.latency = ms;
  }

  /** Resets every open connection and every new one until heal(). */
  cut(): void {
    this.currentMode = 'cut';
    for (const c of [...this.conns]) {
      this.counters.reset += 1;
      c.destroy(true);
    }
  }

  /** Holds every byte (and every new connection) until heal(), then delivers them in order. */
  partition(): void {
    if (this.currentMode === 'cut') return;
    this.currentMode = 'partition';
  }

  heal(): void {
    const was = this.currentMode;
    this.currentMode = 'open';
    if (was !== 'partition') return;
    for (const c of [...this.conns]) {
      c.connectUpstream(this.targetHost, this.targetPort);
      c.pump();
    }
  }

  async close(): Promise<void> {
    for (const c of [...this.conns]) c.destroy(false);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  dueAt(): number {
    return performance.now() + this.latency;
  }

  /** @internal */
  forget(c: Connection): void {
    this.conns.delete(c);
  }

  private onConnection(sock: Socket): void {
    this.counters.accepted += 1;
    sock.on('error', () => undefined);
    if (this.currentMode === 'cut') {
      this.counters.reset += 1;
      sock.resetAndDestroy();
      return;
    }
    const c = new Connection(this, sock);
    this.conns.add(c);
    if (this.currentMode === 'open') c.connectUpstream(this.targetHost, this.targetPort);
  }
}
