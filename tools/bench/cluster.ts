import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { RedisServer } from '../../test/support/redis';
import { sleep } from './http';
import type { ReadyRole } from './http';
import { BenchReplica, type DistSnapshot } from './replica';
import type { Resources } from './cleanup';

export interface LeaseTimingConfig {
  label: string;
  ttlMs: number;
  renewMs: number;
}

export const LOCK_KEY = 'grinder:leader:lock';

/** What the lock key held at one moment, on the bench's own monotonic clock. */
export interface LeaseReading {
  /** Instance id of the holder, or null when the key is missing or not a lease. */
  holder: string | null;
  /** performance.now() at which Redis will expire the key (-1 PTTL: null). */
  expiresAt: number | null;
}

// GET and PTTL in one atomic step, so the expiry belongs to the value read with it.
const READ_LEASE = "return {redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}";

/**
 * One persistent redis-server of the bench's own (on a free port, never 6379) and two replicas
 * electing through it with the given lease timing.
 */
export class Pair {
  readonly redis: RedisServer;
  readonly timing: LeaseTimingConfig;
  readonly replicas: BenchReplica[] = [];
  private readonly ports: number[] = [];
  private readonly client: Redis;
  private readonly snapshot: DistSnapshot;
  private readonly res: Resources;

  private constructor(redis: RedisServer, timing: LeaseTimingConfig, snapshot: DistSnapshot, res: Resources) {
    this.redis = redis;
    this.timing = timing;
    this.snapshot = snapshot;
    this.res = res;
    this.client = new Redis(redis.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 1_000,
      retryStrategy: () => 50,
    });
    this.client.on('error', () => {
      // Redis is restarted on purpose; the scenarios that read the lease run while it is up.
    });
  }

  static async start(timing: LeaseTimingConfig, snapshot: DistSnapshot, res: Resources): Promise<Pair> {
    const redis = res.redis(await RedisServer.start({ persistent: true }));
    const pair = new Pair(redis, timing, snapshot, res);
    await pair.startReplica(0);
    await pair.startReplica(1);
    return pair;
  }

  instanceId(i: number): string {
    return `bench-${i + 1}`;
  }

  private env(i: number): Record<string, string> {
    return {
      GRINDER_HA_ENABLED: 'true',
      GRINDER_REDIS_URL: this.redis.url,
      GRINDER_HA_LOCK_TTL_MS: String(this.timing.ttlMs),
      GRINDER_HA_RENEW_INTERVAL_MS: String(this.timing.renewMs),
      GRINDER_HA_LOCK_KEY: LOCK_KEY,
      GRINDER_INSTANCE_ID: this.instanceId(i),
      GRINDER_LOG_LEVEL: 'warn',
    };
  }

  async startReplica(i: number): Promise<BenchReplica> {
    const r = await BenchReplica.start(this.snapshot, this.instanceId(i), this.env(i), (x) => this.res.replica(x), this.ports[i]);
    this.ports[i] = r.port;
    this.replicas[i] = r;
    return r;
  }

  replica(i: number): BenchReplica {
    const r = this.replicas[i];
    if (!r) throw new Error(`no replica ${i}`);
    return r;
  }

  roles(): Promise<ReadyRole[]> {
    return Promise.all([0, 1].map((i) => this.replica(i).role()));
  }

  /** Restarts any replica that is not running. */
  async restartDead(): Promise<void> {
    for (const i of [0, 1]) {
      if (!this.replica(i).alive) await this.startReplica(i);
    }
  }

  /**
   * Waits until one replica is ACTIVE and the other STANDBY, seen on `stablePolls` polls in a row,
   * and returns the index of the ACTIVE one.
   */
  async settled(timeoutMs: number, stablePolls = 3): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let streak = 0;
    let last: ReadyRole[];
    for (;;) {
      last = await this.roles();
      const active = last.indexOf('active');
      const ok = last.filter((r) => r === 'active').length === 1 && last.filter((r) => r === 'standby').length === 1;
      streak = ok ? streak + 1 : 0;
      if (streak >= stablePolls) return active;
      if (performance.now() > deadline) {
        throw new Error(`the pair did not settle into one ACTIVE + one STANDBY within ${timeoutMs} ms (roles: ${last.join(', ')})`);
      }
      await sleep(20);
    }
  }

  /** Reads the lock key; the expiry is placed on the bench's clock at the middle of the round trip. */
  async lease(): Promise<LeaseReading> {
    const sent = performance.now();
    const reply = (await this.client.eval(READ_LEASE, 1, LOCK_KEY)) as unknown;
    const received = performance.now();
    if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected lease reading ${JSON.stringify(reply)}`);
    const value = String(reply[0]);
    const pttl = Number(reply[1]);
    const m = /^\d+\|[0-9a-f]+\|(.+)$/.exec(value);
    return { holder: m ? (m[1] as string) : null, expiresAt: pttl >= 0 ? (sent + received) / 2 + pttl : null };
  }

  /** True when Redis answers PING right now (a fresh connection, no retries). */
  redisAnswers(): Promise<boolean> {
    return new Promise((resolve) => {
      const sock = createConnection({ host: '127.0.0.1', port: this.redis.port });
      const done = (ok: boolean): void => {
        sock.destroy();
        resolve(ok);
      };
      sock.setTimeout(200, () => done(false));
      sock.on('error', () => done(false));
      sock.on('connect', () => sock.write('PING\r\n'));
      sock.on('data', (d: Buffer) => done(d.toString().startsWith('+PONG')));
    });
  }

  async close(): Promise<void> {
    this.client.disconnect();
    for (const r of this.replicas) await r.stop('SIGKILL');
    await this.res.releaseRedis(this.redis);
  }
}
