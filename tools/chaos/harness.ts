import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { leaseKeys } from '../../src/redis/keys';
import { ChildProcesses } from '../kit/children';
import { ShiftedClock } from '../kit/clock-shim';
import { runGrinder } from '../kit/command';
import type { IncarnationRecord } from '../kit/leadership';
import { freePort } from '../kit/ports';
import { ChaosProxy } from '../kit/proxy';
import { RedisServer } from '../kit/redis';
import { SentinelSetup } from '../kit/redis-topologies';
import { Replica } from '../kit/replica';
import { monoNow } from '../kit/time';
import { analyze, FAULT_KINDS, mergeSnapshots, type ChaosReport, type FaultKind, type FaultRecord, type RunRecords, type StreamEntry } from './checker';
import { errMessage } from '../../src/error-text';

/*
 * The chaos harness: one persistent redis-server, N replicas each behind its own ChaosProxy, and a
 * loop that injects one fault at a time, chosen at random under the seed, with a pause to settle
 * after each. It records what the checker needs (stream snapshots, every incarnation's role
 * changes, kill times, the faults) and hands them to analyze().
 *
 * Time bound: start-up (at most ~15 s to start replicas, plus the first election, which waits one
 * TTL on a fresh Redis), then `durationS` of faults, then a short end phase (wait for a leader,
 * stop everything, last snapshot). No fault starts unless it can end before the deadline.
 */

/**
 * Every process a run starts, so that whatever happens to the harness (an error, Ctrl-C, an
 * uncaught exception) the CLI can still kill each of them, synchronously, on its way out.
 */
export const chaosChildren = new ChildProcesses();
const track = (proc: ChildProcess): void => {
  chaosChildren.add(proc);
};

export interface ChaosOptions {
  durationS: number;
  replicas: number;
  seed: number;
  ttlMs: number;
  renewMs: number;
  /** The replicas' live-loop write interval. */
  liveIntervalMs: number;
  settleMinMs: number;
  settleMaxMs: number;
  /** Kinds to draw from (default: all). */
  faults: readonly FaultKind[];
  /** The replica entry point (default dist/main.js); another build, e.g. to see the checker catch a broken one. */
  mainJs: string;
  /** Keep every replica's log lines and the raw records here (not removed at the end). */
  logsDir: string | null;
  /** Redis Sentinel instead of one Redis: a master, a replica and three Sentinels; replicas connect through the Sentinels. */
  sentinel: boolean;
  /**
   * The first replica runs with MIXED_TTL_FACTOR × the TTL and renew interval, as a replica
   * configured differently would: every barrier (redis-wipe, record-delete) must then outlast its
   * longer lease.
   */
  mixedTtl: boolean;
  /** Aborting ends the fault phase early; the run still stops everything and reports. */
  signal: AbortSignal;
  progress: (line: string) => void;
}

export interface ChaosOutcome {
  records: RunRecords;
  report: ChaosReport;
}

export const LOCK_KEY = 'grinder:chaos:lock';
export const MIXED_TTL_FACTOR = 3;
const LONG_TTL_INSTANCE = 'chaos-1';
export const STREAM_KEY = leaseKeys(LOCK_KEY).liveStream;

/** mulberry32: a small, fast, seedable PRNG; plenty for choosing faults. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Aborted extends Error {}

interface Slot {
  instance: string;
  port: number;
  /** Between the replica and Redis (standalone mode); null in Sentinel mode. */
  proxy: ChaosProxy | null;
  current: Replica;
}

/** One fault's random draws, all made before any timing-dependent step so a seed replays the same plan. */
interface Plan {
  kind: FaultKind;
  settleMs: number;
  preferActive: boolean;
  targetIndex: number;
  holdMs: number;
  latencyMs: number;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosOutcome> {
  const h = new Harness(opts);
  return h.run();
}

class Harness {
  private readonly o: ChaosOptions;
  private readonly rand: () => number;
  private readonly slots: Slot[] = [];
  private readonly past: Replica[] = [];
  private readonly faults: FaultRecord[] = [];
  private readonly errors: string[] = [];
  private readonly snapshots: StreamEntry[][] = [];
  private redis: RedisServer | null = null;
  private client: Redis | null = null;
  private epoch = 0;
  private lastId = '-';
  private streamLock: Promise<void> = Promise.resolve();
  private startMonoMs = 0;
  private bag: FaultKind[] = [];
  private clock: ShiftedClock | null = null;
  private sentinelSetup: SentinelSetup | null = null;

  constructor(opts: ChaosOptions) {
    this.o = opts;
    this.rand = prng(opts.seed);
  }

  private log(line: string): void {
    const t = this.startMonoMs === 0 ? 0 : (monoNow() - this.startMonoMs) / 1000;
    this.o.progress(`[${t.toFixed(1).padStart(6)}s] ${line}`);
  }

  private between(min: number, max: number): number {
    return Math.round(min + this.rand() * (max - min));
  }

  /** Shuffled bag: every kind comes up once before any comes up twice, so short runs see variety. */
  private nextKind(): FaultKind {
    if (this.bag.length === 0) {
      const kinds = [...this.o.faults];
      for (let i = kinds.length - 1; i > 0; i--) {
        const j = Math.floor(this.rand() * (i + 1));
        [kinds[i], kinds[j]] = [kinds[j] as FaultKind, kinds[i] as FaultKind];
      }
      this.bag = kinds;
    }
    return this.bag.shift() as FaultKind;
  }

  private plan(): Plan {
    const { ttlMs } = this.o;
    const kind = this.nextKind();
    const settleMs = this.between(this.o.settleMinMs, this.o.settleMaxMs);
    const preferActive = this.rand() < 0.6;
    const targetIndex = Math.floor(this.rand() * this.o.replicas);
    let holdMs = 0;
    let latencyMs = 0;
    switch (kind) {
      case 'kill':
        holdMs = this.between(0, 800); // down time before the restart
        break;
      case 'zombie':
        holdMs = this.between(Math.round(ttlMs * 1.2), Math.round(ttlMs * 2.2));
        break;
      case 'redis-restart':
      case 'redis-wipe':
        holdMs = this.between(50, 800);
        break;
      case 'latency':
        holdMs = this.between(1_000, 3_000);
        // Up to 40% of the TTL each way: beyond a fifth, round trips outlast the command timeout.
        latencyMs = this.between(5, Math.round(ttlMs * 0.4));
        break;
      case 'cut':
      case 'partition':
        holdMs = this.between(200, Math.round(ttlMs * 2));
        break;
      case 'record-delete':
      case 'evict':
      case 'counter-corrupt':
      case 'switchover':
        holdMs = 0;
        break;
      case 'rollback':
        holdMs = this.between(Math.round(ttlMs * 0.5), Math.round(ttlMs * 2)); // how far back
        break;
      case 'master-kill':
        holdMs = this.between(500, 3_000); // how long the old master stays down
        break;
      case 'clock-step':
        holdMs = this.between(Math.round(ttlMs * 0.5), Math.round(ttlMs * 2)); // how long the step lasts
        latencyMs = this.rand() < 0.5 ? 3_600 : -3_600; // the step, in seconds
        break;
    }
    return { kind, settleMs, preferActive, targetIndex, holdMs, latencyMs };
  }

  async run(): Promise<ChaosOutcome> {
    this.startMonoMs = monoNow();
    let endMonoMs: number;
    try {
      await this.setUp();
      await this.faultPhase();
      await this.awaitLeader('the end of the run', this.longestTtlMs * 3 + 2_000);
      await this.sleep(Math.min(1_000, this.o.ttlMs), false);
    } catch (err) {
      if (!(err instanceof Aborted)) {
        this.errors.push(`harness: ${errMessage(err)}`);
        this.log(`harness error: ${errMessage(err)}`);
      }
    } finally {
      endMonoMs = await this.tearDown();
    }
    const records = this.records(endMonoMs);
    if (this.o.logsDir) this.keepLogs(this.o.logsDir, records);
    return { records, report: analyze(records) };
  }

  private async setUp(): Promise<void> {
    const { o } = this;
    const starting: Promise<void>[] = [];
    if (o.sentinel) {
      this.sentinelSetup = await SentinelSetup.start({ onSpawn: track });
      this.log(
        `Sentinel set-up: master ${this.sentinelSetup.master.port}, replica ${this.sentinelSetup.replica.port}, Sentinels ${this.sentinelSetup.sentinels.map((x) => x.port).join(', ')}`,
      );
      this.client = this.sentinelSetup.client();
      this.client.on('error', () => undefined);
      for (let i = 0; i < o.replicas; i++) {
        const instance = `chaos-${i + 1}`;
        const port = await freePort();
        const slot: Slot = { instance, port, proxy: null, current: this.spawn(instance, port, this.sentinelSetup.url, 0) };
        this.slots.push(slot);
        starting.push(slot.current.waitHealthy(15_000, 25));
      }
    } else {
      if (o.faults.includes('clock-step')) this.clock = ShiftedClock.build();
      this.redis = await RedisServer.start({
        dir: mkdtempSync(join(tmpdir(), 'grinder-chaos-redis-')),
        persistent: true,
        extraArgs: ['--loglevel', 'warning'],
        env: this.clock?.env ?? {},
        onStderr: () => undefined,
        onSpawn: track,
      });
      this.log(`redis-server pid ${String(this.redis.pid)} on port ${this.redis.port} (appendonly, fsync always), dir ${this.redis.dir}`);
      this.client = new Redis(this.redis.url, {
        maxRetriesPerRequest: 1,
        commandTimeout: 2_000,
        retryStrategy: (times: number) => Math.min(50 * times, 250),
      });
      this.client.on('error', () => undefined); // outages are the point; snapshots report their own failures
      for (let i = 0; i < o.replicas; i++) {
        const proxy = await ChaosProxy.start({ targetPort: this.redis.port });
        const instance = `chaos-${i + 1}`;
        const port = await freePort();
        const slot: Slot = { instance, port, proxy, current: this.spawn(instance, port, `redis://127.0.0.1:${proxy.port}/0`, 0) };
        this.slots.push(slot);
        starting.push(slot.current.waitHealthy(15_000, 25));
      }
    }
    await Promise.all(starting);
    for (const s of this.slots)
      this.log(
        `${s.instance}: pid ${String(s.current.pid)}, http ${s.port}, redis ${s.proxy ? `via proxy ${s.proxy.port}` : 'through the Sentinels'}, TTL ${o.ttlMs * this.ttlFactor(s.instance)} ms`,
      );
    // A fresh Redis holds everyone off for one TTL (the data-loss barrier), then someone leads.
    const first = await this.awaitLeader('the first leader', this.longestTtlMs * 4 + 5_000);
    this.log(`first leader: ${first.instance}`);
    this.startSnapshots();
  }

  /** The lease timing factor of `instance`: MIXED_TTL_FACTOR for the long-TTL replica of a mixed run. */
  private ttlFactor(instance: string): number {
    return this.o.mixedTtl && instance === LONG_TTL_INSTANCE ? MIXED_TTL_FACTOR : 1;
  }

  /** The longest TTL any replica uses: what a barrier, and so a wait for a leader, may take. */
  private get longestTtlMs(): number {
    return this.o.ttlMs * (this.o.mixedTtl ? MIXED_TTL_FACTOR : 1);
  }

  private spawn(instance: string, port: number, redisUrl: string, incarnation: number): Replica {
    const { o } = this;
    const factor = this.ttlFactor(instance);
    return Replica.spawn({
      mainJs: o.mainJs,
      name: instance,
      incarnation,
      port,
      onSpawn: track,
      env: {
        GRINDER_HA_ENABLED: 'true',
        GRINDER_REDIS_URL: redisUrl,
        GRINDER_HA_LOCK_TTL_MS: String(o.ttlMs * factor),
        GRINDER_HA_RENEW_INTERVAL_MS: String(o.renewMs * factor),
        GRINDER_HA_LOCK_KEY: LOCK_KEY,
        GRINDER_LIVE_STREAM_KEY: STREAM_KEY,
        GRINDER_LIVE_INTERVAL_MS: String(o.liveIntervalMs),
        // Never trim: the checker wants every accepted write (the harness also snapshots).
        GRINDER_LIVE_STREAM_MAXLEN: '100000000',
        GRINDER_INSTANCE_ID: instance,
        GRINDER_LOG_LEVEL: 'info',
      },
    });
  }

  private async faultPhase(): Promise<void> {
    this.log(`fault phase: ${this.o.durationS} s, seed ${this.o.seed}, kinds ${this.o.faults.join(', ')}`);
    const deadline = monoNow() + this.o.durationS * 1_000;
    for (;;) {
      const p = this.plan();
      await this.sleep(p.settleMs);
      const left = deadline - monoNow();
      // Room for the fault itself plus the time it takes to act on it (a restart, finding the leader).
      if (left < p.holdMs + 1_500) {
        await this.sleep(Math.max(0, left));
        return;
      }
      await this.inject(p);
    }
  }

  private async inject(p: Plan): Promise<void> {
    switch (p.kind) {
      case 'kill':
        return this.kill(p);
      case 'zombie':
        return this.zombie(p);
      case 'redis-restart':
        return this.redisRestart(p, false);
      case 'redis-wipe':
        return this.redisRestart(p, true);
      case 'latency':
      case 'cut':
      case 'partition':
        return this.network(p);
      case 'record-delete':
        return this.recordDelete();
      case 'evict':
        return this.evict();
      case 'counter-corrupt':
        return this.counterCorrupt();
      case 'rollback':
        return this.rollback(p);
      case 'clock-step':
        return this.clockStep(p);
      case 'master-kill':
        return this.masterKill(p);
      case 'switchover':
        return this.switchover();
    }
  }

  /**
   * The operator's planned switchover, run as an operator runs it (the bin, straight to Redis, not
   * through a replica's proxy). Its outcome is logged; the checker judges the leaderships.
   */
  private async switchover(): Promise<void> {
    const { o } = this;
    const url = this.sentinelSetup ? this.sentinelSetup.url : this.redis?.url;
    if (!url) return;
    const at = monoNow();
    const r = await runGrinder(
      ['switchover', '--timeout-ms', String(3 * this.longestTtlMs)],
      {
        GRINDER_REDIS_URL: url,
        GRINDER_HA_LOCK_KEY: LOCK_KEY,
        GRINDER_HA_LOCK_TTL_MS: String(o.ttlMs),
        GRINDER_HA_RENEW_INTERVAL_MS: String(o.renewMs),
      },
      6 * this.longestTtlMs + 10_000,
      { mainJs: o.mainJs, failure: 'resolve', onSpawn: track },
    );
    const said = (r.code === 0 ? r.stdout : r.stderr).trim().split('\n')[0] ?? '';
    this.log(`switchover: exit ${String(r.code)}: ${said}`);
    this.record('switchover', null, at, `grinder switchover exited ${String(r.code)}: ${said}`);
  }

  private redisUrlOf(slot: Slot): string {
    if (slot.proxy) return `redis://127.0.0.1:${slot.proxy.port}/0`;
    if (this.sentinelSetup) return this.sentinelSetup.url;
    throw new Error(`${slot.instance} has no way to Redis`);
  }

  /** Sentinel mode: SIGKILL whichever node is master; it comes back after holdMs and the Sentinels make it a replica. */
  private async masterKill(p: Plan): Promise<void> {
    const setup = this.sentinelSetup;
    if (!setup) return;
    const port = await setup.masterPort();
    const victim = port === setup.master.port ? setup.master : setup.replica;
    const other = victim === setup.master ? setup.replica : setup.master;
    this.log(`master-kill: SIGKILL the Redis master (port ${port}); back in ${p.holdMs} ms as a replica`);
    let at = 0;
    await this.withStream(async () => {
      await this.snapshot(true);
      at = monoNow();
      await victim.stop();
    });
    const until = monoNow() + 15_000;
    while ((await setup.masterPort().catch(() => 0)) !== other.port && monoNow() < until) await this.sleep(50, false);
    await this.sleep(p.holdMs, false);
    await victim.startProcess();
    this.record('master-kill', null, at, `SIGKILL the Redis master on ${port}; the Sentinels promoted ${other.port}; the old master back ${p.holdMs} ms later`);
  }

  private async recordDelete(): Promise<void> {
    const at = monoNow();
    const n = await (this.client as Redis).del(LOCK_KEY).catch(() => 0);
    this.log(`record-delete: DEL ${LOCK_KEY} (${n} key)`);
    this.record('record-delete', null, at, `DEL of the lease record (${n} key removed)`);
  }

  /**
   * Memory pressure under volatile-ttl: filler keys with a TTL until Redis has evicted some, then
   * the filler goes and the limit is lifted. The lease keys and the live stream have no TTL, so
   * this policy must never pick them (the checker would see a barrier or lost entries if it did).
   */
  private async evict(): Promise<void> {
    const client = this.client as Redis;
    const evicted = async (): Promise<number> => Number(/evicted_keys:(\d+)/.exec(await client.info('stats'))?.[1] ?? 0);
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1] ?? 0);
    const before = await evicted();
    const at = monoNow();
    await client.config('SET', 'maxmemory-policy', 'volatile-ttl');
    await client.config('SET', 'maxmemory', String(used + 2 * 1024 * 1024));
    const value = 'x'.repeat(10_000);
    let round = 0;
    try {
      while ((await evicted()) - before < 50 && round < 100) {
        const p = client.pipeline();
        for (let j = 0; j < 50; j++) p.set(`chaos:filler:${round}:${j}`, value, 'EX', 3_600);
        await p.exec();
        round += 1;
      }
    } finally {
      await client.config('SET', 'maxmemory', '0');
      await client.config('SET', 'maxmemory-policy', 'noeviction');
      for (let r = 0; r < round; r++) await client.del(...Array.from({ length: 50 }, (_, j) => `chaos:filler:${r}:${j}`));
    }
    const n = (await evicted()) - before;
    this.log(`evict: ${n} filler keys evicted under volatile-ttl`);
    this.record('evict', null, at, `memory pressure under volatile-ttl: ${n} filler keys evicted`);
  }

  private async counterCorrupt(): Promise<void> {
    const client = this.client as Redis;
    const keys = leaseKeys(LOCK_KEY);
    const values = ['5', 'not-a-number', '99999999999999999999', '9007199254740991'];
    const at = monoNow();
    const value = values[Math.floor(this.rand() * values.length)] as string;
    await client.set(keys.counter, value).catch(() => undefined);
    this.log(`counter-corrupt: ${keys.counter} = ${value}`);
    this.record('counter-corrupt', null, at, `the token counter set to ${value}`);
  }

  /**
   * Redis comes back with older data: the lease keys as they were `holdMs` ago, written while every
   * replica is cut off from the restarted Redis, so each sees a break in its connection first.
   */
  private async rollback(p: Plan): Promise<void> {
    const client = this.client as Redis;
    const keys = leaseKeys(LOCK_KEY);
    const names = [keys.record, keys.counter, keys.fence];
    const old = await Promise.all(names.map((k) => client.dumpBuffer(k).catch(() => null)));
    this.log(`rollback: lease keys saved; restoring them in ${p.holdMs} ms`);
    await this.sleep(p.holdMs, false);
    const at = monoNow();
    for (const s of this.slots) s.proxy?.cut();
    try {
      await this.withStream(async () => {
        await this.snapshot(true);
        const redis = this.redis as RedisServer;
        await redis.stop();
        await redis.startProcess();
        for (let i = 0; i < names.length; i++) {
          const dump = old[i];
          const name = names[i] as string;
          if (dump) await client.restore(name, 0, dump, 'REPLACE').catch(() => undefined);
          else await client.del(name).catch(() => undefined);
        }
      });
    } finally {
      for (const s of this.slots) s.proxy?.heal();
    }
    this.log('rollback: Redis back with the lease keys of before');
    this.record('rollback', null, at, `Redis restarted with the lease record, counter and fence of ${p.holdMs} ms before`);
  }

  private async clockStep(p: Plan): Promise<void> {
    const clock = this.clock;
    if (!clock) return;
    const at = monoNow();
    this.log(`clock-step: Redis' wall clock ${p.latencyMs > 0 ? '+' : ''}${p.latencyMs} s for ${p.holdMs} ms`);
    clock.step(p.latencyMs);
    try {
      await this.sleep(p.holdMs, false);
    } finally {
      clock.step(-p.latencyMs);
    }
    this.record('clock-step', null, at, `Redis' wall clock stepped ${p.latencyMs} s for ${p.holdMs} ms, then back`);
  }

  private record(kind: FaultKind, target: string | null, startMonoMs: number, detail: string): void {
    this.faults.push({ kind, target, startMonoMs, endMonoMs: monoNow(), detail });
  }

  private async kill(p: Plan): Promise<void> {
    const { slot, role } = await this.target(p);
    const victim = slot.current;
    this.log(`kill: SIGKILL ${slot.instance} (${role}), restart in ${p.holdMs} ms`);
    const at = await victim.kill();
    this.past.push(victim);
    await this.sleep(p.holdMs, false);
    slot.current = this.spawn(slot.instance, slot.port, this.redisUrlOf(slot), victim.incarnation + 1);
    await slot.current.waitHealthy(15_000, 25);
    this.log(`kill: ${slot.instance} restarted, pid ${String(slot.current.pid)}`);
    this.record('kill', slot.instance, at, `SIGKILL the ${role} replica; restarted ${p.holdMs} ms later`);
  }

  private async zombie(p: Plan): Promise<void> {
    const active = await this.findActive(this.longestTtlMs * 3 + 1_000);
    if (!active) {
      this.log('zombie: no ACTIVE replica to pause; skipped');
      return;
    }
    this.log(`zombie: SIGSTOP ${active.instance} (active) for ${p.holdMs} ms`);
    const at = monoNow();
    active.current.pause();
    try {
      await this.sleep(p.holdMs, false);
    } finally {
      active.current.resume();
    }
    this.record('zombie', active.instance, at, `SIGSTOP the active replica for ${p.holdMs} ms (TTL ${this.o.ttlMs}), then SIGCONT`);
  }

  private async redisRestart(p: Plan, loseData: boolean): Promise<void> {
    const redis = this.redis as RedisServer;
    const kind: FaultKind = loseData ? 'redis-wipe' : 'redis-restart';
    this.log(`${kind}: Redis down for ${p.holdMs} ms${loseData ? ', data lost' : ', data kept'}`);
    let at = 0;
    await this.withStream(async () => {
      if (loseData) {
        // No write may land between the last snapshot and the crash, or the checker never sees it.
        await (this.client as Redis).call('CLIENT', 'PAUSE', '5000', 'WRITE');
      }
      await this.snapshot(true);
      at = monoNow();
      await redis.stop();
      if (loseData) {
        redis.wipe();
        this.epoch += 1;
        this.lastId = '-';
      }
    });
    await this.sleep(p.holdMs, false);
    await redis.startProcess();
    this.log(`${kind}: redis-server back, pid ${String(redis.pid)}`);
    this.record(kind, null, at, `Redis SIGKILLed, ${loseData ? 'data directory emptied, ' : ''}back ${p.holdMs} ms later`);
  }

  private async network(p: Plan): Promise<void> {
    const { slot, role } = await this.target(p);
    const proxy = slot.proxy;
    if (!proxy) return;
    const at = monoNow();
    let detail: string;
    if (p.kind === 'latency') {
      this.log(`latency: +${p.latencyMs} ms each way for ${slot.instance} (${role}) for ${p.holdMs} ms`);
      proxy.setLatency(p.latencyMs);
      detail = `+${p.latencyMs} ms each way for ${p.holdMs} ms on the ${role} replica`;
    } else if (p.kind === 'cut') {
      this.log(`cut: ${slot.instance} (${role}) cut off from Redis for ${p.holdMs} ms`);
      proxy.cut();
      detail = `connections reset for ${p.holdMs} ms on the ${role} replica`;
    } else {
      this.log(`partition: ${slot.instance} (${role}) partitioned from Redis for ${p.holdMs} ms`);
      proxy.partition();
      detail = `bytes held for ${p.holdMs} ms, then delivered, on the ${role} replica`;
    }
    try {
      await this.sleep(p.holdMs, false);
    } finally {
      proxy.setLatency(0);
      proxy.heal();
    }
    this.record(p.kind, slot.instance, at, detail);
  }

  /** The replica a fault hits: the ACTIVE one when the plan prefers it and one is found, else the drawn one. */
  private async target(p: Plan): Promise<{ slot: Slot; role: string }> {
    if (p.preferActive) {
      const a = await this.findActive(this.longestTtlMs + 500);
      if (a) return { slot: a, role: 'active' };
    }
    const slot = this.slots[p.targetIndex % this.slots.length] as Slot;
    const role = await slot.current.readyRole(500);
    return { slot, role };
  }

  private async findActive(timeoutMs: number): Promise<Slot | null> {
    const until = monoNow() + timeoutMs;
    for (;;) {
      const roles = await Promise.all(this.slots.map((s) => s.current.readyRole(500)));
      const i = roles.indexOf('active');
      if (i >= 0) return this.slots[i] as Slot;
      if (monoNow() >= until) return null;
      await this.sleep(20, false);
    }
  }

  private async awaitLeader(what: string, timeoutMs: number): Promise<Slot> {
    const s = await this.findActive(timeoutMs);
    if (!s) throw new Error(`no replica became ACTIVE within ${timeoutMs} ms, waiting for ${what}`);
    return s;
  }

  // ---- the stream -------------------------------------------------------------------------------

  /** Serializes everything that reads the stream or stops Redis. */
  private async withStream<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.streamLock;
    let release = (): void => undefined;
    this.streamLock = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private snapshotTimer: NodeJS.Timeout | null = null;

  /** A background snapshot every 2 s keeps each Redis data lifetime's entries safe in memory. */
  private startSnapshots(): void {
    const tick = (): void => {
      this.snapshotTimer = setTimeout(() => {
        void this.withStream(() => this.snapshot(false)).finally(() => {
          if (this.snapshotTimer) tick();
        });
      }, 2_000);
    };
    tick();
  }

  private stopSnapshots(): void {
    if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
  }

  /** Reads the stream from the last id seen on (inclusive; merging dedupes). Call inside withStream. */
  private async snapshot(required: boolean): Promise<void> {
    const client = this.client as Redis;
    const redis = this.redis;
    if (redis && !redis.running) {
      if (required) throw new Error('cannot snapshot the stream: Redis is not running');
      return;
    }
    try {
      const got: StreamEntry[] = [];
      for (;;) {
        const rows = await client.xrange(STREAM_KEY, this.lastId, '+', 'COUNT', 2_000);
        for (const [id, fields] of rows) got.push(toEntry(id, fields, this.epoch));
        const last = rows[rows.length - 1];
        if (last) this.lastId = last[0];
        if (rows.length < 2_000) break;
      }
      this.snapshots.push(got);
    } catch (err) {
      if (required) throw new Error(`cannot snapshot the stream: ${errMessage(err)}`, { cause: err });
    }
  }

  // ---- end of run -------------------------------------------------------------------------------

  /** Stops every process (replicas first, noting kill times), takes the last snapshot, cleans up. */
  private async tearDown(): Promise<number> {
    this.stopSnapshots();
    for (const s of this.slots) {
      s.proxy?.setLatency(0);
      s.proxy?.heal();
    }
    for (const s of this.slots) {
      if (s.current.alive) await s.current.kill();
    }
    const end = monoNow();
    try {
      if (this.redis?.running || this.sentinelSetup) await this.withStream(() => this.snapshot(true));
    } catch (err) {
      this.errors.push(`final snapshot: ${errMessage(err)}`);
    }
    this.client?.disconnect();
    for (const s of this.slots) await s.proxy?.close().catch(() => undefined);
    await this.redis?.cleanup().catch(() => undefined);
    await this.sentinelSetup?.cleanup().catch(() => undefined);
    this.log(`stopped: ${this.slots.length} replicas, ${this.slots.length} proxies, redis-server; temp dir removed`);
    return end;
  }

  private records(endMonoMs: number): RunRecords {
    const all = [...this.past, ...this.slots.map((s) => s.current)];
    const incarnations: IncarnationRecord[] = all.map((r) => ({
      instance: r.name,
      incarnation: r.incarnation,
      startedMonoMs: r.startedMonoMs,
      end:
        r.killedMonoMs !== null
          ? { kind: 'killed', monoMs: r.killedMonoMs }
          : r.exitMonoMs !== null
            ? { kind: 'exited', monoMs: r.exitMonoMs, code: r.exitCode ?? null }
            : { kind: 'running' },
      roleChanges: r.roleChanges,
      rejectedWrites: r.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('fenced live write rejected')).length,
    }));
    return {
      seed: this.o.seed,
      replicas: this.o.replicas,
      ttlMs: this.o.ttlMs,
      renewMs: this.o.renewMs,
      startMonoMs: this.startMonoMs,
      endMonoMs,
      entries: mergeSnapshots(this.snapshots),
      incarnations,
      faults: this.faults,
      harnessErrors: this.errors,
    };
  }

  private keepLogs(dir: string, records: RunRecords): void {
    mkdirSync(dir, { recursive: true });
    for (const r of [...this.past, ...this.slots.map((s) => s.current)]) {
      writeFileSync(join(dir, `${r.name}.${r.incarnation}.log`), r.output.join('\n') + '\n');
    }
    writeFileSync(join(dir, 'records.json'), JSON.stringify(records, null, 1));
  }

  /** Sleeps; with abortable=true (between faults) an abort ends the fault phase. */
  private sleep(ms: number, abortable = true): Promise<void> {
    const signal = this.o.signal;
    return new Promise((resolve, reject) => {
      if (abortable && signal.aborted) return reject(new Aborted());
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', onAbort);
        resolve();
      }
      function onAbort(): void {
        clearTimeout(t);
        reject(new Aborted());
      }
      if (abortable) signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function toEntry(id: string, fields: string[], epoch: number): StreamEntry {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i] as string, fields[i + 1] as string);
  return {
    id,
    epoch,
    token: Number(f.get('token')),
    instance: f.get('instance') ?? '?',
    seq: Number(f.get('seq')),
    monoMs: Number(f.get('mono_ms')),
    wallMs: Number(f.get('wall_ms')),
  };
}

export { FAULT_KINDS };
