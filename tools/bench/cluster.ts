import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { parseAnnouncement } from '../../src/ha/lock';
import { leaseKeys } from '../../src/redis/keys';
import { RedisServer, redisPing } from '../kit/redis';
import type { Replica } from '../kit/replica';
import { sleep } from '../kit/time';
import { startBenchReplica, type DistSnapshot } from './replica';
import type { Resources } from './cleanup';
import { DEFAULTS } from '../../src/config';

export interface LeaseTimingConfig {
  label: string;
  ttlMs: number;
  renewMs: number;
}

export const LOCK_KEY = DEFAULTS.lockKey;

/** What a replica and the `grinder` commands are given: the same GRINDER_* settings an operator's would be. */
export function clusterEnv(redisUrl: string, timing: LeaseTimingConfig): Record<string, string> {
  return {
    GRINDER_REDIS_URL: redisUrl,
    GRINDER_HA_LOCK_TTL_MS: String(timing.ttlMs),
    GRINDER_HA_RENEW_INTERVAL_MS: String(timing.renewMs),
    GRINDER_HA_LOCK_KEY: LOCK_KEY,
  };
}

/**
 * One bench replica's environment. The failover scenarios log at warn; the ones that read the
 * replicas' "role changed" lines need info, which is where those are logged.
 */
export function replicaEnv(redisUrl: string, timing: LeaseTimingConfig, instanceId: string, logLevel: 'warn' | 'info'): Record<string, string> {
  return {
    GRINDER_HA_ENABLED: 'true',
    ...clusterEnv(redisUrl, timing),
    GRINDER_INSTANCE_ID: instanceId,
    GRINDER_LOG_LEVEL: logLevel,
  };
}

export interface PairOptions {
  logLevel?: 'warn' | 'info';
}

/** The lease as its last announcement showed it, on the bench's own monotonic clock. */
export interface LeaseReading {
  /** Instance id of the holder, or null before any acquisition was announced. */
  holder: string | null;
  /**
   * performance.now() at which the lease ends: the arrival of its last acquire or renewal
   * announcement plus its TTL. The lease record never expires in Redis; this is the moment a
   * standby that heard the same announcement may take a dead holder over.
   */
  expiresAt: number | null;
}

/**
 * One persistent redis-server of the bench's own (on a free port, never 6379) and two replicas
 * electing through it with the given lease timing.
 */
export class Pair {
  readonly redis: RedisServer;
  readonly timing: LeaseTimingConfig;
  readonly replicas: Replica[] = [];
  /** Every replica process this pair started, in order, restarted ones included. */
  readonly started: Replica[] = [];
  private readonly ports: number[] = [];
  private readonly subscriber: Redis;
  private last: LeaseReading = { holder: null, expiresAt: null };
  private readonly snapshot: DistSnapshot;
  private readonly res: Resources;
  private readonly logLevel: 'warn' | 'info';

  private constructor(redis: RedisServer, timing: LeaseTimingConfig, snapshot: DistSnapshot, res: Resources, opts: PairOptions) {
    this.redis = redis;
    this.timing = timing;
    this.snapshot = snapshot;
    this.res = res;
    this.logLevel = opts.logLevel ?? 'warn';
    this.subscriber = new Redis(redis.url, { retryStrategy: () => 50, maxRetriesPerRequest: null });
    this.subscriber.on('error', () => {
      // Redis is restarted on purpose; the scenarios that read the lease run while it is up.
    });
    this.subscriber.on('message', (_channel: string, message: string) => {
      const a = parseAnnouncement(message);
      if (a && (a.event === 'acquired' || a.event === 'renewed')) this.last = { holder: a.instanceId, expiresAt: performance.now() + a.ttlMs };
      else if (a && a.event === 'released') this.last = { holder: null, expiresAt: null };
    });
    void this.subscriber.subscribe(leaseKeys(LOCK_KEY).events).catch(() => undefined);
  }

  static async start(timing: LeaseTimingConfig, snapshot: DistSnapshot, res: Resources, opts: PairOptions = {}): Promise<Pair> {
    const redis = res.redis(await RedisServer.start({ persistent: true }));
    const pair = new Pair(redis, timing, snapshot, res, opts);
    await pair.startReplica(0);
    await pair.startReplica(1);
    return pair;
  }

  instanceId(i: number): string {
    return `bench-${i + 1}`;
  }

  /** The settings `grinder` commands need to act on this pair. */
  cliEnv(): Record<string, string> {
    return clusterEnv(this.redis.url, this.timing);
  }

  async startReplica(i: number): Promise<Replica> {
    const env = replicaEnv(this.redis.url, this.timing, this.instanceId(i), this.logLevel);
    const r = await startBenchReplica(
      this.snapshot.mainJs,
      this.instanceId(i),
      env,
      (x) => {
        this.res.replica(x);
        this.started.push(x);
      },
      this.ports[i],
    );
    this.ports[i] = r.port;
    this.replicas[i] = r;
    return r;
  }

  replica(i: number): Replica {
    const r = this.replicas[i];
    if (!r) throw new Error(`no replica ${i}`);
    return r;
  }

  roles(): Promise<string[]> {
    return Promise.all([0, 1].map((i) => this.replica(i).readyRole(1_000)));
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
    let last: string[];
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

  /** The lease as last announced (a short wait lets announcements in flight arrive). */
  async lease(): Promise<LeaseReading> {
    await sleep(5);
    return { ...this.last };
  }

  /** True when Redis answers PING right now (a fresh connection, no retries). */
  redisAnswers(): Promise<boolean> {
    return redisPing(this.redis.port, 200);
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
    for (const r of this.replicas) await r.stop('SIGKILL');
    await this.res.releaseRedis(this.redis);
  }
}
