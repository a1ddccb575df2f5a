import assert from 'node:assert/strict';
import { Redis, type Cluster } from 'ioredis';
import { leaseKeys } from '../../src/redis/keys';
import { leadershipIntervals, type IncarnationRecord, type Interval } from '../../tools/kit/leadership';
import { RedisServer, type RedisServerOptions } from '../../tools/kit/redis';
import { Replica } from '../../tools/kit/replica';
import { monoNow, sleep } from '../../tools/kit/time';

/*
 * Real processes for fault tests: one redis-server of the test's own and N `node dist/main.js`
 * replicas. Every incarnation's "role changed" records are kept, so a test can rebuild every
 * leadership (start, end or valid-until, token) after the fact and assert that none overlapped and
 * no token was handed out twice, whatever the fault did.
 */

export interface ReplicaSpec {
  ttlMs: number;
  renewMs: number;
}

export interface FaultClusterOptions {
  replicas: ReplicaSpec[];
  lockKey?: string;
  redis?: RedisServerOptions;
  liveIntervalMs?: number;
  /** Start only the first N replicas (the test starts the rest with startReplica). Default: all. */
  startFirst?: number;
}

interface Incarnation {
  instance: string;
  incarnation: number;
  replica: Replica;
  startedMonoMs: number;
  killedMonoMs: number | null;
}

export class FaultCluster {
  readonly lockKey: string;
  /** The redis-server of the test's own; null when the test brought its own topology (Sentinel, Cluster). */
  private readonly server: RedisServer | null;
  /** What the replicas are given as GRINDER_REDIS_URL. */
  readonly redisUrl: string;
  /** A plain client for the test's own reads and faults; reconnects by itself. */
  readonly client: Redis | Cluster;
  private readonly specs: ReplicaSpec[];
  private readonly liveIntervalMs: number;
  private readonly incarnations: Incarnation[] = [];
  private readonly current: (Incarnation | null)[] = [];

  private constructor(server: RedisServer | null, redisUrl: string, client: Redis | Cluster | null, opts: FaultClusterOptions) {
    this.server = server;
    this.redisUrl = redisUrl;
    this.lockKey = opts.lockKey ?? 'grinder:fault:lock';
    this.specs = opts.replicas;
    this.liveIntervalMs = opts.liveIntervalMs ?? 200;
    this.client = client ?? new Redis(redisUrl, { retryStrategy: () => 50, maxRetriesPerRequest: 1 });
    this.client.on('error', () => {
      // The tests stop and restart Redis on purpose.
    });
  }

  static async start(opts: FaultClusterOptions): Promise<FaultCluster> {
    const redis = await RedisServer.start(opts.redis ?? {});
    return FaultCluster.launch(new FaultCluster(redis, redis.url, null, opts), opts);
  }

  /** Replicas on a Redis topology the test runs itself (Sentinel, Cluster); `client` reads and faults it. */
  static async attach(opts: FaultClusterOptions & { redisUrl: string; client: Redis | Cluster }): Promise<FaultCluster> {
    return FaultCluster.launch(new FaultCluster(null, opts.redisUrl, opts.client, opts), opts);
  }

  private static async launch(c: FaultCluster, opts: FaultClusterOptions): Promise<FaultCluster> {
    try {
      for (let i = 0; i < (opts.startFirst ?? opts.replicas.length); i++) await c.startReplica(i);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  /** The redis-server of the test's own (start() only). */
  get redis(): RedisServer {
    if (!this.server) throw new Error('this fault cluster runs on a topology the test started itself');
    return this.server;
  }

  get keys(): ReturnType<typeof leaseKeys> {
    return leaseKeys(this.lockKey);
  }

  instanceId(i: number): string {
    return `fault-${i + 1}`;
  }

  spec(i: number): ReplicaSpec {
    const s = this.specs[i];
    if (!s) throw new Error(`no replica ${i}`);
    return s;
  }

  async startReplica(i: number): Promise<Replica> {
    const spec = this.spec(i);
    const startedMonoMs = monoNow();
    const replica = await Replica.start({
      // GRINDER_FAULTS_MAIN_JS runs the suite against another build (docs/chaos.md: proving the tests bite).
      ...(process.env.GRINDER_FAULTS_MAIN_JS ? { mainJs: process.env.GRINDER_FAULTS_MAIN_JS } : {}),
      env: {
        GRINDER_HA_ENABLED: 'true',
        GRINDER_REDIS_URL: this.redisUrl,
        GRINDER_HA_LOCK_KEY: this.lockKey,
        GRINDER_HA_LOCK_TTL_MS: String(spec.ttlMs),
        GRINDER_HA_RENEW_INTERVAL_MS: String(spec.renewMs),
        GRINDER_INSTANCE_ID: this.instanceId(i),
        GRINDER_LIVE_INTERVAL_MS: String(this.liveIntervalMs),
        GRINDER_LIVE_STREAM_KEY: this.keys.liveStream,
        GRINDER_LOG_LEVEL: 'info',
      },
    });
    const inc: Incarnation = {
      instance: this.instanceId(i),
      incarnation: this.incarnations.filter((x) => x.instance === this.instanceId(i)).length,
      replica,
      startedMonoMs,
      killedMonoMs: null,
    };
    this.incarnations.push(inc);
    this.current[i] = inc;
    return replica;
  }

  replica(i: number): Replica {
    const inc = this.current[i];
    if (!inc) throw new Error(`replica ${i} is not running`);
    return inc.replica;
  }

  /** SIGKILL (or another signal) to one replica; a kill is recorded as the end of its leadership. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const inc = this.current[i];
    if (!inc) return;
    inc.killedMonoMs = monoNow();
    await inc.replica.stop(signal);
    this.current[i] = null;
  }

  signal(i: number, signal: NodeJS.Signals): void {
    this.replica(i).signal(signal);
  }

  /** Indexes of the replicas whose /readyz says ACTIVE right now. */
  async activeNow(): Promise<number[]> {
    const roles = await Promise.all(this.current.map((inc) => (inc ? inc.replica.readyRole() : Promise.resolve('down'))));
    return roles.flatMap((r, i) => (r === 'active' ? [i] : []));
  }

  async waitForLeader(timeoutMs: number): Promise<number> {
    const deadline = monoNow() + timeoutMs;
    for (;;) {
      const active = await this.activeNow();
      if (active.length === 1) return active[0] as number;
      if (monoNow() > deadline) throw new Error(`no single ACTIVE replica within ${timeoutMs} ms (active: ${active.join(', ') || 'none'})`);
      await sleep(20);
    }
  }

  /**
   * Waits for a leader doing accepted work: a live-stream entry sent after `sinceMonoMs` by a
   * replica that /readyz reports ACTIVE. Returns when that entry was sent (monotonic ms).
   */
  async waitForAcceptedWork(sinceMonoMs: number, timeoutMs: number): Promise<number> {
    const deadline = monoNow() + timeoutMs;
    for (;;) {
      const entries = (await this.client.xrevrange(this.keys.liveStream, '+', '-', 'COUNT', 20).catch(() => [])) as [string, string[]][];
      for (const [, fields] of entries) {
        const f = fieldMap(fields);
        const sent = Number(f.mono_ms);
        if (sent > sinceMonoMs) {
          const i = this.specs.findIndex((_, idx) => this.instanceId(idx) === f.instance);
          if (i >= 0 && this.current[i] && (await this.replica(i).readyRole()) === 'active') return sent;
        }
      }
      if (monoNow() > deadline) throw new Error(`no accepted live write by an ACTIVE replica within ${timeoutMs} ms after the fault ended`);
      await sleep(25);
    }
  }

  /** The records every incarnation wrote, as the chaos checker reads them. */
  records(): IncarnationRecord[] {
    return this.incarnations.map((inc) => ({
      instance: inc.instance,
      incarnation: inc.incarnation,
      startedMonoMs: inc.startedMonoMs,
      end:
        inc.killedMonoMs !== null
          ? { kind: 'killed', monoMs: inc.killedMonoMs }
          : inc.replica.alive
            ? { kind: 'running' }
            : { kind: 'exited', monoMs: monoNow(), code: null },
      roleChanges: inc.replica.roleChanges,
      rejectedWrites: inc.replica.logs.filter((l) => l.msg === 'fenced live write rejected: a newer leadership exists; stepping down').length,
    }));
  }

  /** Every leadership so far, ended at `endMonoMs` when still open. */
  leaderships(endMonoMs = monoNow()): Interval[] {
    return leadershipIntervals(this.records(), endMonoMs);
  }

  /**
   * The promise: no two leaderships share a moment (whether or not they did work), and every
   * leadership has a token greater than every one that began before it.
   */
  assertSafe(endMonoMs = monoNow()): Interval[] {
    const all = this.leaderships(endMonoMs);
    for (let i = 0; i < all.length; i++) {
      const a = all[i] as Interval;
      for (let j = i + 1; j < all.length; j++) {
        const b = all[j] as Interval;
        if (b.startMonoMs >= a.endMonoMs) continue;
        assert.fail(
          `two leaders: ${a.instance}#${a.token} [${a.startMonoMs.toFixed(1)}, ${a.endMonoMs.toFixed(1)}] and ${b.instance}#${b.token} [${b.startMonoMs.toFixed(1)}, ${b.endMonoMs.toFixed(1)}] overlap by ${(a.endMonoMs - b.startMonoMs).toFixed(1)} ms`,
        );
      }
      if (i > 0) {
        const prev = all[i - 1] as Interval;
        assert.ok(a.token > prev.token, `token ${a.token} (${a.instance}) is not above ${prev.token} (${prev.instance}), which began before it`);
      }
    }
    return all;
  }

  /** Every accepted live-stream entry: one leadership per token (no token shared by two writers). */
  async assertStreamTokensUnique(): Promise<void> {
    const entries = (await this.client.xrange(this.keys.liveStream, '-', '+')) as [string, string[]][];
    const writers = new Map<string, string>();
    for (const [, fields] of entries) {
      const f = fieldMap(fields);
      const token = f.token ?? '';
      const who = writers.get(token);
      assert.ok(who === undefined || who === f.instance, `token ${token} was accepted from two writers: ${who} and ${f.instance}`);
      writers.set(token, f.instance ?? '');
    }
  }

  /** The last log lines of every incarnation, for a failure message. */
  tail(lines = 25): string {
    return this.incarnations
      .map((inc) => {
        // Repeated findings (a retry loop) would hide what came before them.
        const distinct = inc.replica.logs.filter((l, i, all) => i === 0 || l.msg !== all[i - 1]?.msg);
        const shown = distinct.slice(-lines).map((l) => JSON.stringify({ ...l, err: undefined }));
        return `--- ${inc.instance}#${inc.incarnation}\n${shown.join('\n')}\n${inc.replica.stderr.join('').slice(-2_000)}`;
      })
      .join('\n');
  }

  async close(): Promise<void> {
    for (let i = 0; i < this.current.length; i++) if (this.current[i]) await this.kill(i);
    this.client.disconnect();
    await this.server?.cleanup();
  }
}

function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
  return out;
}
