import type { Attributes, Counter, Histogram, Meter, MeterProvider } from '@opentelemetry/api';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { ROLES, type HaStatusSource, type Role } from '../ha/role';
import type { BarrierReason } from '../ha/lock';
import { leaseTiming } from '../ha/timing';
import {
  BARRIER_REASONS,
  Label,
  LIVE_WRITE_RESULTS,
  LOCK_FAILURE_REASONS,
  Metric,
  type LiveWriteResult,
  type LockFailureReason,
  type LockOperation,
} from './names';

/** What the live (leader) work reports, read at collection time. */
export interface LiveStatsSource {
  /** Seconds since the last accepted write on this replica; null before the first one. */
  lastAcceptedAgeSeconds(): number | null;
}

export interface MetricSources {
  ha: HaStatusSource;
  instanceId: string;
  version: string;
  lockTtlMs: number | null;
  renewIntervalMs: number | null;
  /** Monotonic seconds since start. */
  uptimeSeconds(): number;
  /** Whether /readyz answers 200 right now. */
  ready(): boolean;
  live?: LiveStatsSource;
  /** Master changes seen by the lease's Redis client (HA only). */
  masterChanges?: () => number;
}

/** The instruments lease operations and the elector write to; the rest are observed on collection. */
export interface HaInstruments {
  renewLatency(seconds: number): void;
  lockFailure(operation: LockOperation, reason: LockFailureReason): void;
  transition(from: Role, to: Role): void;
  liveWrite(result: LiveWriteResult): void;
  barrier(reason: BarrierReason): void;
  /** A lease write that needed replica acknowledgements got them (true) or not. */
  replicaAck(acked: boolean): void;
}

const OPERATIONS: readonly LockOperation[] = ['acquire', 'renew', 'release'];
const TRANSITIONS: readonly [Role, Role][] = [
  ['unknown', 'standby'],
  ['unknown', 'active'],
  ['standby', 'active'],
  ['active', 'standby'],
];

/** The Renard R20 series: 20 steps per decade, each about 12% above the one before. */
const R20 = [1, 1.12, 1.25, 1.4, 1.6, 1.8, 2, 2.24, 2.5, 2.8, 3.15, 3.55, 4, 4.5, 5, 5.6, 6.3, 7.1, 8, 9];

/**
 * Histogram bounds for renewal round trips. histogram_quantile() interpolates inside a bucket, so
 * a quantile can read up to one bucket width too high: from 10 ms up to the Redis command timeout
 * (where a renewal is cut off) the bounds are R20 steps, so p99 of a steady round trip reads at
 * most ~14% high. Below 10 ms (a healthy Redis) three coarse buckets do; above the timeout only
 * the timeout itself and the TTL, since no renewal waits longer.
 */
export function renewLatencyBuckets(ttlMs: number): number[] {
  // Only the command timeout is read, and it depends on the TTL alone.
  const timeout = leaseTiming(ttlMs, 0).commandTimeoutMs / 1000;
  const bounds = [0.001, 0.0025, 0.005];
  for (let decade = 0.01; decade <= timeout; decade *= 10) {
    for (const m of R20) {
      const b = Number((m * decade).toPrecision(3));
      if (b < timeout) bounds.push(b);
    }
  }
  bounds.push(timeout);
  if (ttlMs / 1000 > timeout) bounds.push(ttlMs / 1000);
  return bounds;
}

/**
 * Event-loop delay, GC and heap through OpenTelemetry's runtime instrumentation, on our own
 * MeterProvider (not the global one): event-loop stalls delay renewals, so they are the early
 * warning of a lease about to be lost.
 */
export function startRuntimeMetrics(provider: MeterProvider): { stop(): void } {
  const runtime = new RuntimeNodeInstrumentation({ enabled: false });
  runtime.setMeterProvider(provider);
  runtime.enable();
  return { stop: () => runtime.disable() };
}

/**
 * The observed gauges. They are read at collection time from the sources, so a scrape judges the
 * lease deadline at that moment rather than reporting what was true at the last tick.
 */
export function observeState(meter: Meter, src: MetricSources): void {
  const role = meter.createObservableGauge(Metric.haRole, { description: 'Current HA role of this replica: 1 for the role it is in, 0 for the others.' });
  const isLeader = meter.createObservableGauge(Metric.haIsLeader, { description: '1 while this replica is ACTIVE, else 0.' });
  const enabled = meter.createObservableGauge(Metric.haEnabled, { description: '1 when HA (Redis lease election) is enabled, else 0.' });
  const token = meter.createObservableGauge(Metric.haFencingToken, {
    description: 'Fencing token of the current (or last seen) leadership; 0 until this replica has seen one (a real token is never 0).',
  });
  const remaining = meter.createObservableGauge(Metric.haLeaseRemaining, {
    description: 'Seconds until this replica must stop calling itself ACTIVE unless it renews; 0 when not ACTIVE.',
  });
  const ttl = meter.createObservableGauge(Metric.haLockTtl, { description: 'Configured lease TTL in seconds.' });
  const renewInterval = meter.createObservableGauge(Metric.haRenewInterval, { description: 'Configured lease renew interval in seconds.' });
  const redisUp = meter.createObservableGauge(Metric.haRedisUp, {
    description: '1 while lease operations reach Redis (the last one got an answer, recently enough), else 0.',
  });
  const up = meter.createObservableGauge(Metric.up, { description: '1 while the process is serving.' });
  const uptime = meter.createObservableGauge(Metric.uptime, { description: 'Seconds since this process started.' });
  const buildInfo = meter.createObservableGauge(Metric.buildInfo, { description: 'Always 1; labels carry the version and instance id.' });
  const liveAge = meter.createObservableGauge(Metric.liveLastAcceptedWriteAge, {
    description: 'Seconds since this replica last had a fenced live write accepted; before its first one, seconds since the process started.',
  });
  const policy = meter.createObservableGauge(Metric.haRedisMaxmemoryPolicy, {
    description:
      "Always 1; the policy label is Redis' maxmemory-policy as read at connect (unknown until read or when CONFIG is not allowed). Anything but noeviction is unsafe configuration.",
  });
  const masterChanges = meter.createObservableCounter(Metric.haRedisMasterChanges, {
    description: 'Times the Redis master behind the lease changed (a Sentinel or Cluster failover) since this replica started.',
  });
  const durable = meter.createObservableGauge(Metric.haRedisDurable, {
    description: '1 when Redis keeps every acknowledged write across a restart (appendonly yes, appendfsync always), 0 when it may not or it is unknown.',
  });
  const ready = meter.createObservableGauge(Metric.readyzReady, { description: '1 while /readyz answers 200 (this replica is ACTIVE), else 0.' });

  meter.addBatchObservableCallback(
    (obs) => {
      const snap = src.ha.snapshot();
      for (const r of ROLES) obs.observe(role, snap.role === r ? 1 : 0, { [Label.role]: r });
      obs.observe(isLeader, snap.role === 'active' ? 1 : 0);
      obs.observe(enabled, snap.haEnabled ? 1 : 0);
      // From the first scrape of every HA replica, so rules and panels never lack the series of a
      // replica that has not seen a token yet. HA disabled has no tokens at all.
      if (snap.haEnabled) obs.observe(token, snap.fencingToken ?? 0);
      obs.observe(remaining, snap.role === 'active' && snap.leaseRemainingMs !== null ? snap.leaseRemainingMs / 1000 : 0);
      if (src.lockTtlMs !== null) obs.observe(ttl, src.lockTtlMs / 1000);
      if (src.renewIntervalMs !== null) obs.observe(renewInterval, src.renewIntervalMs / 1000);
      if (snap.redisConnected !== null) obs.observe(redisUp, snap.redisConnected ? 1 : 0);
      obs.observe(ready, src.ready() ? 1 : 0);
      obs.observe(up, 1);
      obs.observe(uptime, src.uptimeSeconds());
      obs.observe(buildInfo, 1, { [Label.version]: src.version, [Label.instanceId]: src.instanceId });
      // Before the first accepted write the replica has gone without one since it started, which
      // is what GrinderHALeaderIdle judges. The work-gap rule leaves such a replica out
      // (grinder_live_writes_total{result="accepted"} is 0), so a fresh one does not shorten it.
      if (src.live) obs.observe(liveAge, src.live.lastAcceptedAgeSeconds() ?? src.uptimeSeconds());
      if (snap.haEnabled) {
        obs.observe(policy, 1, { [Label.policy]: snap.redisMaxmemoryPolicy ?? 'unknown' });
        obs.observe(durable, snap.redisDurable === true ? 1 : 0);
        obs.observe(masterChanges, src.masterChanges?.() ?? 0);
      }
    },
    [role, isLeader, enabled, token, remaining, ttl, renewInterval, redisUp, up, uptime, buildInfo, liveAge, ready, policy, durable, masterChanges],
  );
}

/**
 * The instruments that lease operations, the elector and the live work write to. Counters start
 * at zero for every known label set, so the first failure already shows in rate() and increase().
 */
export function createInstruments(meter: Meter, opts: { lockTtlMs: number | null; live: boolean }): HaInstruments {
  const latency: Histogram = meter.createHistogram(Metric.haRenewLatency, {
    description: 'Time for a lease renewal round trip to Redis, answered or not.',
    advice: { explicitBucketBoundaries: renewLatencyBuckets(opts.lockTtlMs ?? 10_000) },
  });
  const failures: Counter = meter.createCounter(Metric.haLockFailures, { description: 'Lease operations that failed, by operation and reason.' });
  const transitions: Counter = meter.createCounter(Metric.haTransitions, { description: 'HA role changes of this replica.' });
  const liveWrites: Counter = meter.createCounter(Metric.liveWrites, {
    description: 'Fenced live writes by result (rejected: a newer leader exists; failed: no answer or an error).',
  });
  const barriers: Counter = meter.createCounter(Metric.haBarriers, {
    description: 'Barriers this replica wrote, by reason (data_loss, record_missing, rollback).',
  });
  const replicaAcks: Counter = meter.createCounter(Metric.haReplicaAcks, {
    description: 'Lease writes that had to reach replicas (WAIT) by result: acked, or missing (too few in time: the write did not count).',
  });
  const rollbacks: Counter = meter.createCounter(Metric.haRedisRollbacks, {
    description: 'Times this replica found Redis behind a token it had already seen (data rolled back) and wrote a barrier.',
  });

  if (opts.lockTtlMs !== null) {
    // The SDK exports a histogram point only once something was recorded for it; NaN creates the
    // point but is not counted (the SDK drops NaN from count, sum and buckets), so the histogram
    // is exported with count 0 from the first scrape, on a standby that never renews too.
    latency.record(Number.NaN);
    for (const operation of OPERATIONS) {
      for (const reason of LOCK_FAILURE_REASONS) failures.add(0, { [Label.operation]: operation, [Label.reason]: reason });
    }
  }
  for (const [from, to] of TRANSITIONS) transitions.add(0, { [Label.from]: from, [Label.to]: to });
  if (opts.live) for (const result of LIVE_WRITE_RESULTS) liveWrites.add(0, { [Label.result]: result });
  if (opts.lockTtlMs !== null) {
    for (const reason of BARRIER_REASONS) barriers.add(0, { [Label.reason]: reason });
    rollbacks.add(0);
    for (const result of ['acked', 'missing']) replicaAcks.add(0, { [Label.result]: result });
  }

  return {
    renewLatency: (seconds) => latency.record(seconds),
    lockFailure: (operation, reason) => failures.add(1, { [Label.operation]: operation, [Label.reason]: reason } satisfies Attributes),
    transition: (from, to) => transitions.add(1, { [Label.from]: from, [Label.to]: to }),
    liveWrite: (result) => liveWrites.add(1, { [Label.result]: result }),
    barrier: (reason) => {
      barriers.add(1, { [Label.reason]: reason });
      if (reason === 'rollback') rollbacks.add(1);
    },
    replicaAck: (acked) => replicaAcks.add(1, { [Label.result]: acked ? 'acked' : 'missing' }),
  };
}
