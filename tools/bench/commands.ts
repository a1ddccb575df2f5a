import { Redis } from 'ioredis';
import { findMember, isHealthyStandby, readCluster } from '../../src/cluster/view';
import { defineCommands } from '../../src/redis/commands';
import { leaseKeys } from '../../src/redis/keys';
import { runGrinder, type CommandRun } from '../kit/command';
import { findOverlaps, leadershipIntervals, type IncarnationRecord } from '../kit/leadership';
import { freePort } from '../kit/ports';
import { RedisServer } from '../kit/redis';
import type { Replica } from '../kit/replica';
import { monoNow, sleep, waitFor } from '../kit/time';
import type { Resources } from './cleanup';
import { clusterEnv, LOCK_KEY, Pair, replicaEnv, type LeaseTimingConfig } from './cluster';
import { startBenchReplica, type DistSnapshot } from './replica';
import { firstActiveMonoMs, reportedSwitchoverMs, switchoverGap } from './role-log';
import { series, type Progress, type Series } from './scenarios';
import { errMessage } from '../../src/error-text';

/*
 * The two scenarios that run `grinder` commands against real replicas: `grinder switchover` and
 * `grinder init`. Both read the replicas' own "role changed" lines (mono_ms) rather than polling
 * /readyz: the question is when leadership moved, not when a poll noticed.
 */

export interface SwitchoverResult {
  /** Old leader's step-down line → the target's to=active line (mono_ms of both). */
  gap: Series;
  /** `grinder switchover --to <id>` spawned → exited 0 (Node start-up and the Redis connection included). */
  command: Series;
  /** The time the command itself prints: its first read of the cluster view (the request follows it) → the new lease seen. */
  reported: Series;
  /** Leaderships that shared time over the whole run (every replica's lines): must be 0. */
  overlaps: number;
  failures: string[];
}

export interface InitVariant {
  /** Replicas spawned → the first "role changed" to ACTIVE of either of them. */
  firstLeader: Series;
  failures: string[];
}

export interface InitResult {
  /** `grinder init` ran on the fresh Redis before the replicas started. */
  withInit: InitVariant;
  /** `grinder init` spawned → exited 0 (declared). */
  initCommand: Series;
  /** The same without `grinder init`: the one-TTL barrier of a Redis that never saw GRINDER. */
  withoutInit: InitVariant;
}

/** Runs the snapshot's `grinder <args>` with only `env` and PATH, as an operator would; killed with the bench. */
function runCli(snapshot: DistSnapshot, res: Resources, args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<CommandRun> {
  return runGrinder(args, env, timeoutMs, { mainJs: snapshot.mainJs, onSpawn: (proc) => res.child(proc) });
}

const fmt = (v: number): string => `${v.toFixed(1)} ms`;

/** Every leadership the pair's replicas reported, rebuilt as the chaos checker does, and the overlapping pairs among them. */
function overlapsOf(pair: Pair): number {
  const end = monoNow();
  const records: IncarnationRecord[] = pair.started.map((r, k) => ({
    instance: r.name,
    incarnation: k,
    startedMonoMs: 0,
    end: r.exitMonoMs === null ? { kind: 'running' } : { kind: 'killed', monoMs: r.exitMonoMs },
    roleChanges: r.roleChanges,
    rejectedWrites: 0,
  }));
  return findOverlaps(leadershipIntervals(records, end)).length;
}

/**
 * `grinder switchover --to <the STANDBY>` on a settled pair, `trials` times, back and forth. Each
 * trial waits until the cluster view shows the target as a healthy STANDBY, since the command
 * refuses anything else and /readyz can show the new roles before the registrations do; then a
 * random part of one renew interval, so the request lands at every phase of the renew cycle.
 */
export async function switchoverScenario(
  timing: LeaseTimingConfig,
  snapshot: DistSnapshot,
  res: Resources,
  trials: number,
  log: Progress,
): Promise<SwitchoverResult> {
  const gap: number[] = [];
  const command: number[] = [];
  const reported: number[] = [];
  const failures: string[] = [];
  const limit = timing.ttlMs * 3 + 10_000;
  const pair = await Pair.start(timing, snapshot, res, { logLevel: 'info' });
  const client = new Redis(pair.redis.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {
    // A failed read is retried by waitFor; the trial fails only when it never succeeds.
  });
  defineCommands(client);
  const keys = leaseKeys(LOCK_KEY);
  try {
    for (let t = 1; t <= trials; t++) {
      try {
        const a = await pair.settled(limit);
        const leader = pair.replica(a);
        const target = pair.replica(1 - a);
        await waitFor(
          `${target.name} to be a healthy STANDBY in the cluster view`,
          async () => {
            const v = await readCluster(client, keys, LOCK_KEY);
            const m = findMember(v, target.name);
            return v.leader === leader.name && m !== null && isHealthyStandby(m) ? true : undefined;
          },
          limit,
          10,
        );
        await sleep(Math.random() * timing.renewMs);
        const since = monoNow();
        const run = await runCli(snapshot, res, ['switchover', '--to', target.name], pair.cliEnv(), limit + 5_000);
        if (run.code !== 0) throw new Error(`grinder switchover exited ${String(run.code)}: ${run.stderr.trim() || run.stdout.trim()}`);
        // The command returns once Redis shows the new lease; the target's log line may still be in its pipe.
        const g = await waitFor(
          `the role-change lines of ${leader.name} and ${target.name}`,
          () => switchoverGap(leader.roleChanges, target.roleChanges, target.name, since) ?? undefined,
          5_000,
          5,
        );
        gap.push(g.gapMs);
        command.push(run.ms);
        const own = reportedSwitchoverMs(run.stdout);
        if (own !== null) reported.push(own);
        if (g.overlapMs > 0) failures.push(`trial ${t}: ${leader.name} and ${target.name} both led for ${fmt(g.overlapMs)}`);
        if (g.oldToken === null || g.newToken === null || g.newToken <= g.oldToken) {
          failures.push(`trial ${t}: the new leadership's token ${String(g.newToken)} is not above the old one's ${String(g.oldToken)}`);
        }
        log(
          `  switchover ${t}/${trials}: ${leader.name} → ${target.name} gap ${fmt(g.gapMs)} (token ${String(g.oldToken)} → ${String(g.newToken)}); command ${fmt(run.ms)}${own !== null ? ` (it reports ${own} ms)` : ''}`,
        );
      } catch (err) {
        failures.push(`trial ${t}: ${errMessage(err)}`);
        log(`  switchover ${t}/${trials} failed: ${errMessage(err)}`);
        await pair.restartDead();
      }
    }
    const overlaps = overlapsOf(pair);
    if (overlaps > 0) failures.push(`${overlaps} overlapping leaderships in the replicas' role-change lines`);
    return { gap: series(gap), command: series(command), reported: series(reported), overlaps, failures };
  } finally {
    client.disconnect();
    await pair.close();
  }
}

/**
 * One fresh redis-server per trial; with `init`, `grinder init` on it first; then both replicas
 * spawned at once and the first to=active line awaited. The time is from spawning the first
 * replica (monoNow() just before) to that line's mono_ms.
 */
async function initTrials(
  timing: LeaseTimingConfig,
  snapshot: DistSnapshot,
  res: Resources,
  trials: number,
  init: boolean,
  log: Progress,
): Promise<{ variant: InitVariant; initMs: number[] }> {
  const first: number[] = [];
  const initMs: number[] = [];
  const failures: string[] = [];
  const name = init ? 'init' : 'no init';
  for (let t = 1; t <= trials; t++) {
    const redis = res.redis(await RedisServer.start({ persistent: true }));
    const replicas: Replica[] = [];
    try {
      let line = `  ${name} ${t}/${trials}:`;
      if (init) {
        const run = await runCli(snapshot, res, ['init'], clusterEnv(redis.url, timing), 30_000);
        if (run.code !== 0 || !run.stdout.startsWith('declared')) {
          throw new Error(`grinder init exited ${String(run.code)}: ${run.stderr.trim() || run.stdout.trim()}`);
        }
        initMs.push(run.ms);
        line += ` init ${fmt(run.ms)};`;
      }
      // Ports first: the clock starts at the first spawn, not at a port search.
      const ports = [await freePort(), await freePort()];
      const spawnedAt = monoNow();
      const starting = [0, 1].map((i) =>
        startBenchReplica(
          snapshot.mainJs,
          `bench-${i + 1}`,
          replicaEnv(redis.url, timing, `bench-${i + 1}`, 'info'),
          (r) => {
            res.replica(r);
            replicas.push(r);
          },
          ports[i],
        ),
      );
      await Promise.all(starting);
      const leaderAt = await waitFor(
        'the first replica to become ACTIVE',
        () => firstActiveMonoMs(replicas.map((r) => r.roleChanges)) ?? undefined,
        timing.ttlMs * 3 + 10_000,
        5,
      );
      first.push(leaderAt - spawnedAt);
      log(`${line} first leader ${fmt(leaderAt - spawnedAt)} after spawning the replicas`);
    } catch (err) {
      failures.push(`${name} trial ${t}: ${errMessage(err)}`);
      log(`  ${name} ${t}/${trials} failed: ${errMessage(err)}`);
    } finally {
      for (const r of replicas) await r.stop('SIGKILL');
      await res.releaseRedis(redis);
    }
  }
  return { variant: { firstLeader: series(first), failures }, initMs };
}

export async function initScenario(timing: LeaseTimingConfig, snapshot: DistSnapshot, res: Resources, trials: number, log: Progress): Promise<InitResult> {
  const withInit = await initTrials(timing, snapshot, res, trials, true, log);
  const withoutInit = await initTrials(timing, snapshot, res, trials, false, log);
  return { withInit: withInit.variant, initCommand: series(withInit.initMs), withoutInit: withoutInit.variant };
}
