import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isSpanContextValid, SpanStatusCode, type Attributes } from '@opentelemetry/api';
import { DataPointType, MeterProvider, MetricReader, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import pino from 'pino';
import {
  LockUnavailableError,
  type AcquireResult,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type ReleaseResult,
  type RenewResult,
  type AcquireRequest,
  type StoreFacts,
} from '../../src/ha/lock';
import { ROLES, type Role } from '../../src/ha/role';
import { InstrumentedLeaseLock } from '../../src/telemetry/instrumented-lock';
import {
  createInstruments,
  observeState,
  renewLatencyBuckets,
  type HaInstruments,
  type LiveStatsSource,
  type MetricSources,
} from '../../src/telemetry/metrics';
import { LOCK_FAILURE_REASONS, Metric, METER_NAME, RuntimeMetric } from '../../src/telemetry/names';
import { otlpTracesConfigured, startTelemetry } from '../../src/telemetry/sdk';
import { FakeHa } from '../support/fake-ha';

const INSTANCE_ID = 'grinder-test-0123abcd';
const VERSION = '1.2.3';
const LOCK_KEY = 'grinder:leader:lock';
const OPERATIONS = ['acquire', 'renew', 'release'] as const;
const R20 = [1, 1.12, 1.25, 1.4, 1.6, 1.8, 2, 2.24, 2.5, 2.8, 3.15, 3.55, 4, 4.5, 5, 5.6, 6.3, 7.1, 8, 9];
/** TTL 10 s: command timeout 2 s; R20 steps from 10 ms up to it, then the timeout and the TTL. */
const BUCKETS_10S = [
  0.001,
  0.0025,
  0.005,
  ...R20.map((m) => Number((m * 0.01).toPrecision(3))),
  ...R20.map((m) => Number((m * 0.1).toPrecision(3))),
  1,
  1.12,
  1.25,
  1.4,
  1.6,
  1.8,
  2,
  10,
];
const CLUSTER = 'grinder:leader:lock';

/** A pull reader the test collects from directly. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Point {
  attributes: Attributes;
  value: number;
}

/** One collection, by metric name. */
class Collected {
  constructor(readonly byName: Map<string, MetricData>) {}

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  metric(name: string): MetricData {
    const m = this.byName.get(name);
    assert.ok(m, `metric ${name} was not collected; got ${this.names().join(', ')}`);
    return m;
  }

  /** Scalar points (gauges and counters); [] when the metric has none. */
  points(name: string): Point[] {
    const m = this.byName.get(name);
    if (!m) return [];
    assert.notEqual(m.dataPointType, DataPointType.HISTOGRAM, `${name} is a histogram`);
    return m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value as number }));
  }

  /** The value of the only point of a metric without labels. */
  value(name: string): number {
    const pts = this.points(name);
    assert.equal(pts.length, 1, `${name} should have exactly one series, has ${pts.length}`);
    assert.deepEqual((pts[0] as Point).attributes, {});
    return (pts[0] as Point).value;
  }

  /** The value of the series of `name` with exactly `attributes`. */
  series(name: string, attributes: Attributes): number | undefined {
    const key = JSON.stringify(Object.entries(attributes).sort());
    return this.points(name).find((p) => JSON.stringify(Object.entries(p.attributes).sort()) === key)?.value;
  }

  histogram(name: string): Histogram {
    const m = this.metric(name);
    assert.equal(m.dataPointType, DataPointType.HISTOGRAM);
    assert.equal(m.dataPoints.length, 1);
    return (m.dataPoints[0] as { value: Histogram }).value;
  }
}

interface MetricsHarness {
  ha: FakeHa;
  src: MetricSources & { uptime: number };
  instruments: HaInstruments;
  collect(): Promise<Collected>;
  shutdown(): Promise<void>;
}

function metricsHarness(
  opts: { haEnabled?: boolean; lockTtlMs?: number | null; renewIntervalMs?: number | null; live?: LiveStatsSource } = {},
): MetricsHarness {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter(METER_NAME, VERSION);
  const ha = new FakeHa({ haEnabled: opts.haEnabled ?? true });
  const lockTtlMs = opts.lockTtlMs === undefined ? 10_000 : opts.lockTtlMs;
  const src: MetricSources & { uptime: number } = {
    ha,
    ready: () => ha.state.role === 'active',
    instanceId: INSTANCE_ID,
    version: VERSION,
    lockTtlMs,
    renewIntervalMs: opts.renewIntervalMs === undefined ? 3_000 : opts.renewIntervalMs,
    uptime: 0,
    uptimeSeconds() {
      return this.uptime;
    },
    ...(opts.live ? { live: opts.live } : {}),
  };
  observeState(meter, src);
  const instruments = createInstruments(meter, { lockTtlMs, live: false });
  return {
    ha,
    src,
    instruments,
    async collect() {
      const { resourceMetrics, errors } = await reader.collect();
      assert.deepEqual(errors, []);
      const byName = new Map<string, MetricData>();
      for (const scope of resourceMetrics.scopeMetrics) {
        for (const m of scope.metrics) {
          assert.ok(!byName.has(m.descriptor.name), `duplicate metric ${m.descriptor.name}`);
          byName.set(m.descriptor.name, m);
        }
      }
      return new Collected(byName);
    },
    shutdown: () => provider.shutdown(),
  };
}

function oneHot(role: Role): Record<Role, number> {
  return { active: role === 'active' ? 1 : 0, standby: role === 'standby' ? 1 : 0, unknown: role === 'unknown' ? 1 : 0 };
}

function roleSeries(c: Collected): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of c.points(Metric.haRole)) {
    assert.deepEqual(Object.keys(p.attributes), ['role']);
    out[String(p.attributes.role)] = p.value;
  }
  return out;
}

describe('metric names are the contract', () => {
  it('spells every name exactly as dashboards and alerts use it', () => {
    assert.deepEqual(
      { ...Metric },
      {
        haRole: 'grinder_ha_role',
        haIsLeader: 'grinder_ha_is_leader',
        haEnabled: 'grinder_ha_enabled',
        haRenewLatency: 'grinder_ha_renew_latency_seconds',
        haLockFailures: 'grinder_ha_lock_failures_total',
        haTransitions: 'grinder_ha_transitions_total',
        haFencingToken: 'grinder_ha_fencing_token',
        haLeaseRemaining: 'grinder_ha_lease_remaining_seconds',
        haLockTtl: 'grinder_ha_lock_ttl_seconds',
        haRenewInterval: 'grinder_ha_renew_interval_seconds',
        haRedisUp: 'grinder_ha_redis_up',
        up: 'grinder_up',
        uptime: 'grinder_uptime_seconds',
        buildInfo: 'grinder_build_info',
        liveWrites: 'grinder_live_writes_total',
        liveLastAcceptedWriteAge: 'grinder_live_last_accepted_write_age_seconds',
        haRedisMaxmemoryPolicy: 'grinder_ha_redis_maxmemory_policy',
        haRedisDurable: 'grinder_ha_redis_durable',
        haRedisRollbacks: 'grinder_ha_redis_rollbacks_total',
        haBarriers: 'grinder_ha_barriers_total',
        haRedisMasterChanges: 'grinder_ha_redis_master_changes_total',
        haReplicaAcks: 'grinder_ha_replica_acks_total',
        readyzReady: 'grinder_readyz_ready',
      },
    );
    assert.deepEqual([...LOCK_FAILURE_REASONS], ['timeout', 'connection', 'lost', 'wrong_type', 'invalid_value', 'script_error', 'failover', 'replication']);
  });
});

describe('metrics through an in-memory reader', () => {
  let h: MetricsHarness;
  beforeEach(() => {
    h = metricsHarness();
  });
  afterEach(async () => {
    await h.shutdown();
  });

  it('collects every HA metric with HA enabled', async () => {
    h.ha.set({ role: 'active', fencingToken: 7, leaseRemainingMs: 9_000, redisConnected: true });
    // Before the first renewal (and on a replica that never led) the histogram is there, empty.
    const beforeRenew = await h.collect().then((x) => x.histogram(Metric.haRenewLatency));
    assert.equal(beforeRenew.count, 0);
    assert.equal(beforeRenew.sum, 0);
    assert.ok(beforeRenew.buckets.counts.every((n) => n === 0));
    h.instruments.renewLatency(0.002);
    const c = await h.collect();
    assert.equal(c.histogram(Metric.haRenewLatency).count, 1);
    assert.deepEqual(c.names(), [
      'grinder_build_info',
      'grinder_ha_barriers_total',
      'grinder_ha_enabled',
      'grinder_ha_fencing_token',
      'grinder_ha_is_leader',
      'grinder_ha_lease_remaining_seconds',
      'grinder_ha_lock_failures_total',
      'grinder_ha_lock_ttl_seconds',
      'grinder_ha_redis_durable',
      'grinder_ha_redis_master_changes_total',
      'grinder_ha_redis_maxmemory_policy',
      'grinder_ha_redis_rollbacks_total',
      'grinder_ha_redis_up',
      'grinder_ha_renew_interval_seconds',
      'grinder_ha_renew_latency_seconds',
      'grinder_ha_replica_acks_total',
      'grinder_ha_role',
      'grinder_ha_transitions_total',
      'grinder_readyz_ready',
      'grinder_up',
      'grinder_uptime_seconds',
    ]);
    for (const name of c.names()) {
      const m = c.metric(name);
      const expected = name.endsWith('_total') ? DataPointType.SUM : name === Metric.haRenewLatency ? DataPointType.HISTOGRAM : DataPointType.GAUGE;
      assert.equal(m.dataPointType, expected, `${name} type`);
    }
  });

  it('reports grinder_ha_role one-hot with all three series, and is_leader, for each role', async () => {
    for (const role of ['unknown', 'standby', 'active', 'standby', 'unknown'] as const) {
      h.ha.setRole(role);
      const c = await h.collect();
      assert.deepEqual(roleSeries(c), oneHot(role), `role ${role}`);
      assert.equal(c.points(Metric.haRole).length, ROLES.length);
      assert.equal(c.value(Metric.haIsLeader), role === 'active' ? 1 : 0);
      assert.equal(c.value(Metric.readyzReady), role === 'active' ? 1 : 0, `readyz gauge for ${role}`);
    }
  });

  it('reads the source at collection time', async () => {
    h.ha.set({ role: 'active', fencingToken: 3, leaseRemainingMs: 8_750, redisConnected: true });
    h.src.uptime = 12.5;
    const first = await h.collect();
    h.ha.set({ role: 'standby', fencingToken: 4, leaseRemainingMs: 2_000, redisConnected: false });
    h.src.uptime = 20.25;
    const second = await h.collect();

    assert.deepEqual(
      [first.value(Metric.haFencingToken), first.value(Metric.haLeaseRemaining), first.value(Metric.haRedisUp), first.value(Metric.uptime)],
      [3, 8.75, 1, 12.5],
    );
    assert.deepEqual(
      // Not ACTIVE: no lease of ours remains, whatever the holder's lease says.
      [second.value(Metric.haFencingToken), second.value(Metric.haLeaseRemaining), second.value(Metric.haRedisUp), second.value(Metric.uptime)],
      [4, 0, 0, 20.25],
    );
    assert.deepEqual(roleSeries(second), oneHot('standby'));
  });

  it('reports the static facts: enabled, TTL, renew interval, up and build info', async () => {
    const c = await h.collect();
    assert.equal(c.value(Metric.haEnabled), 1);
    assert.equal(c.value(Metric.haLockTtl), 10);
    assert.equal(c.value(Metric.haRenewInterval), 3);
    assert.equal(c.value(Metric.up), 1);
    assert.deepEqual(c.points(Metric.buildInfo), [{ attributes: { version: VERSION, instance_id: INSTANCE_ID }, value: 1 }]);
  });

  it('reports fencing token 0 until one has been seen', async () => {
    h.ha.set({ role: 'unknown', fencingToken: null });
    const c = await h.collect();
    assert.equal(c.value(Metric.haFencingToken), 0);
  });

  it('leaves the live write age out without a live loop', async () => {
    const c = await h.collect();
    assert.deepEqual(c.points(Metric.liveLastAcceptedWriteAge), []);
  });

  it('pre-initialises grinder_ha_lock_failures_total at 0 for every operation and reason', async () => {
    const c = await h.collect();
    const pts = c.points(Metric.haLockFailures);
    assert.equal(pts.length, OPERATIONS.length * LOCK_FAILURE_REASONS.length);
    for (const operation of OPERATIONS) {
      for (const reason of LOCK_FAILURE_REASONS) {
        assert.equal(c.series(Metric.haLockFailures, { operation, reason }), 0, `${operation}/${reason}`);
      }
    }
    const m = c.metric(Metric.haLockFailures);
    assert.equal(m.dataPointType === DataPointType.SUM && m.isMonotonic, true);
  });

  it('counts lock failures per operation and reason', async () => {
    h.instruments.lockFailure('renew', 'timeout');
    h.instruments.lockFailure('renew', 'timeout');
    h.instruments.lockFailure('acquire', 'wrong_type');
    const c = await h.collect();
    assert.equal(c.series(Metric.haLockFailures, { operation: 'renew', reason: 'timeout' }), 2);
    assert.equal(c.series(Metric.haLockFailures, { operation: 'acquire', reason: 'wrong_type' }), 1);
    assert.equal(c.series(Metric.haLockFailures, { operation: 'renew', reason: 'lost' }), 0);
    const total = c.points(Metric.haLockFailures).reduce((s, p) => s + p.value, 0);
    assert.equal(total, 3);
  });

  it('pre-initialises and counts grinder_ha_transitions_total{from,to}', async () => {
    const before = await h.collect();
    assert.deepEqual(
      before.points(Metric.haTransitions).map((p) => [p.attributes.from, p.attributes.to, p.value]),
      [
        ['unknown', 'standby', 0],
        ['unknown', 'active', 0],
        ['standby', 'active', 0],
        ['active', 'standby', 0],
      ],
    );
    h.instruments.transition('unknown', 'standby');
    h.instruments.transition('standby', 'active');
    h.instruments.transition('active', 'standby');
    h.instruments.transition('standby', 'active');
    const after = await h.collect();
    assert.equal(after.series(Metric.haTransitions, { from: 'unknown', to: 'standby' }), 1);
    assert.equal(after.series(Metric.haTransitions, { from: 'standby', to: 'active' }), 2);
    assert.equal(after.series(Metric.haTransitions, { from: 'active', to: 'standby' }), 1);
    assert.equal(after.series(Metric.haTransitions, { from: 'unknown', to: 'active' }), 0);
  });

  it('records renew latency in a histogram with buckets from 1 ms up to the TTL', async () => {
    h.instruments.renewLatency(0.0004);
    h.instruments.renewLatency(0.037);
    h.instruments.renewLatency(12);
    const hist = (await h.collect()).histogram(Metric.haRenewLatency);
    assert.deepEqual(hist.buckets.boundaries, BUCKETS_10S);
    const expected = new Array<number>(BUCKETS_10S.length + 1).fill(0);
    expected[0] = 1; // 0.4 ms <= 1 ms
    expected[BUCKETS_10S.indexOf(0.04)] = 1; // 37 ms in (0.0355, 0.04]
    expected[BUCKETS_10S.length] = 1; // 12 s > TTL: +Inf
    assert.deepEqual(hist.buckets.counts, expected);
    assert.equal(hist.count, 3);
    assert.equal(hist.sum, 0.0004 + 0.037 + 12);
  });
});

describe('the live write age', () => {
  it('counts from the process start until the first accepted write, then from that write', async () => {
    let age: number | null = null;
    const h = metricsHarness({ live: { lastAcceptedAgeSeconds: () => age } });
    try {
      h.src.uptime = 42.5;
      assert.equal((await h.collect()).value(Metric.liveLastAcceptedWriteAge), 42.5);
      age = 0.25;
      assert.equal((await h.collect()).value(Metric.liveLastAcceptedWriteAge), 0.25);
    } finally {
      await h.shutdown();
    }
  });
});

describe('metrics with HA disabled', () => {
  it('reports active, enabled 0, and leaves out what has no meaning without a lock', async () => {
    const h = metricsHarness({ haEnabled: false, lockTtlMs: null, renewIntervalMs: null });
    try {
      h.ha.set({ role: 'active', haEnabled: false, redisConnected: null, fencingToken: null, leaseRemainingMs: null });
      const c = await h.collect();
      assert.deepEqual(roleSeries(c), oneHot('active'));
      assert.equal(c.value(Metric.haIsLeader), 1);
      assert.equal(c.value(Metric.haEnabled), 0);
      assert.equal(c.value(Metric.haLeaseRemaining), 0);
      for (const absent of [Metric.haLockTtl, Metric.haRenewInterval, Metric.haRedisUp, Metric.haFencingToken, Metric.haLockFailures, Metric.haRenewLatency]) {
        assert.deepEqual(c.points(absent), [], `${absent} should be absent`);
      }
      assert.equal(c.points(Metric.haTransitions).length, 4);
      assert.equal(c.value(Metric.readyzReady), 1);
    } finally {
      await h.shutdown();
    }
  });
});

/**
 * histogram_quantile() as Prometheus computes it from cumulative bucket counts: linear
 * interpolation inside the bucket the rank falls in (lower bound 0 for the first bucket).
 */
function promQuantile(q: number, bounds: number[], counts: number[]): number {
  const cumulative: number[] = [];
  counts.reduce((sum, n, i) => (cumulative[i] = sum + n), 0);
  const total = cumulative[cumulative.length - 1] as number;
  const rank = q * total;
  const i = cumulative.findIndex((c) => c >= rank);
  if (i >= bounds.length) return bounds[bounds.length - 1] as number;
  const lower = i === 0 ? 0 : (bounds[i - 1] as number);
  const below = i === 0 ? 0 : (cumulative[i - 1] as number);
  const upper = bounds[i] as number;
  return lower + (upper - lower) * ((rank - below) / ((cumulative[i] as number) - below));
}

describe('renewLatencyBuckets', () => {
  it('is the R20 layout up to the command timeout, then the TTL, for the default 10 s TTL', () => {
    assert.deepEqual(renewLatencyBuckets(10_000), BUCKETS_10S);
  });

  for (const ttl of [1_000, 1_500, 2_000, 2_500, 10_000, 30_000, 3_600_000]) {
    it(`for a ${ttl} ms TTL: ascending from 1 ms, steps of at most 15% from 10 ms to the command timeout, ends at the TTL`, () => {
      const b = renewLatencyBuckets(ttl);
      const timeout = Math.max(50, Math.min(2_000, Math.floor(ttl / 5))) / 1000;
      assert.equal(b[0], 0.001);
      assert.equal(b[b.length - 1], ttl / 1000);
      assert.ok(b.includes(timeout), `the command timeout ${timeout} is a bound`);
      for (let i = 1; i < b.length; i++) {
        const prev = b[i - 1] as number;
        const cur = b[i] as number;
        assert.ok(cur > prev, `ascending at ${i}: ${prev} then ${cur}`);
        if (prev >= 0.01 && cur <= timeout) assert.ok(cur / prev <= 1.15, `step ${prev} -> ${cur} is too coarse`);
      }
    });
  }

  it('reads p99 of a steady sub-second round trip within 15% (the issue: 0.91 s for a 0.4 s round trip)', async () => {
    for (const roundTrip of [0.012, 0.037, 0.1, 0.25, 0.4, 0.401, 0.75, 0.95, 1.5]) {
      const h = metricsHarness({ lockTtlMs: 10_000 });
      try {
        // 200 renewals a little above and below the round trip, as a real link jitters.
        for (let i = 0; i < 200; i++) h.instruments.renewLatency(roundTrip * (0.99 + (i % 3) * 0.01));
        const hist = (await h.collect()).histogram(Metric.haRenewLatency);
        const p99 = promQuantile(0.99, hist.buckets.boundaries, hist.buckets.counts);
        const error = p99 / (roundTrip * 1.01) - 1;
        assert.ok(error >= -0.01 && error <= 0.15, `round trip ${roundTrip} s reads p99 ${p99.toFixed(4)} s (${(error * 100).toFixed(1)}% off)`);
      } finally {
        await h.shutdown();
      }
    }
  });

  it('uses the configured TTL for the histogram', async () => {
    const h = metricsHarness({ lockTtlMs: 2_500, renewIntervalMs: 800 });
    try {
      h.instruments.renewLatency(2);
      const hist = (await h.collect()).histogram(Metric.haRenewLatency);
      assert.deepEqual(hist.buckets.boundaries, renewLatencyBuckets(2_500));
      assert.equal(hist.buckets.boundaries[hist.buckets.boundaries.length - 1], 2.5);
      assert.equal(hist.buckets.counts[hist.buckets.boundaries.indexOf(2.5)], 1);
    } finally {
      await h.shutdown();
    }
  });
});

describe('Prometheus text from startTelemetry', () => {
  it('serves the contract names without scope labels, counters ending in _total', async () => {
    assert.equal(otlpTracesConfigured({}), false);
    assert.equal(otlpTracesConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), false);
    assert.equal(otlpTracesConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }), true);
    assert.equal(otlpTracesConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }), true);

    const t = startTelemetry({ instanceId: INSTANCE_ID, cluster: CLUSTER, version: VERSION, env: {} });
    try {
      assert.equal(t.tracesExported, false);
      // Spans are still real (their ids go into the logs) even though nothing exports them.
      const span = t.tracer.startSpan('probe');
      assert.equal(isSpanContextValid(span.spanContext()), true);
      span.end();

      const ha = new FakeHa({ role: 'active', fencingToken: 42, leaseRemainingMs: 9_500, redisConnected: true });
      let uptime = 61.5;
      observeState(t.meter, {
        ha,
        ready: () => ha.state.role === 'active',
        instanceId: INSTANCE_ID,
        version: VERSION,
        lockTtlMs: 10_000,
        renewIntervalMs: 3_000,
        uptimeSeconds: () => uptime,
      });
      const instruments = createInstruments(t.meter, { lockTtlMs: 10_000, live: false });
      instruments.lockFailure('renew', 'lost');
      instruments.transition('standby', 'active');
      instruments.renewLatency(0.004);

      // Event-loop delay is reported once it has 5 samples (10 ms apart) since the last
      // collection, GC durations after a GC: give both a moment.
      let garbage: number[][] = [];
      for (let i = 0; i < 200_000; i++) garbage.push([i, i + 1]);
      garbage = [];
      // On a busy machine the samples come late: ask again until every runtime metric is there
      // (bounded; the assertions below still name what is missing).
      let text = '';
      for (let waited = 0; waited <= 5_000; waited += 150) {
        await new Promise((r) => setTimeout(r, 150));
        text = await t.metricsText();
        const have = text.split('\n');
        if (Object.values(RuntimeMetric).every((name) => have.some((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_bucket{`)))) break;
      }
      const lines = text.split('\n');
      const has = (line: string): void => assert.ok(lines.includes(line), `missing line ${JSON.stringify(line)} in:\n${text}`);

      has(`grinder_ha_role{role="active",grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_ha_role{role="standby",grinder_cluster="${CLUSTER}"} 0`);
      has(`grinder_ha_role{role="unknown",grinder_cluster="${CLUSTER}"} 0`);
      has(`grinder_ha_is_leader{grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_ha_enabled{grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_ha_fencing_token{grinder_cluster="${CLUSTER}"} 42`);
      has(`grinder_ha_lease_remaining_seconds{grinder_cluster="${CLUSTER}"} 9.5`);
      has(`grinder_ha_lock_ttl_seconds{grinder_cluster="${CLUSTER}"} 10`);
      has(`grinder_ha_renew_interval_seconds{grinder_cluster="${CLUSTER}"} 3`);
      has(`grinder_ha_redis_up{grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_up{grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_uptime_seconds{grinder_cluster="${CLUSTER}"} 61.5`);
      has(`grinder_build_info{version="${VERSION}",instance_id="${INSTANCE_ID}",grinder_cluster="${CLUSTER}"} 1`);
      has('# TYPE grinder_ha_lock_failures_total counter');
      has(`grinder_ha_lock_failures_total{operation="renew",reason="lost",grinder_cluster="${CLUSTER}"} 1`);
      has(`grinder_ha_lock_failures_total{operation="acquire",reason="timeout",grinder_cluster="${CLUSTER}"} 0`);
      has('# TYPE grinder_ha_transitions_total counter');
      has(`grinder_ha_transitions_total{from="standby",to="active",grinder_cluster="${CLUSTER}"} 1`);
      has('# TYPE grinder_ha_renew_latency_seconds histogram');
      has(`grinder_ha_renew_latency_seconds_bucket{grinder_cluster="${CLUSTER}",le="0.001"} 0`);
      has(`grinder_ha_renew_latency_seconds_bucket{grinder_cluster="${CLUSTER}",le="0.005"} 1`);
      has(`grinder_ha_renew_latency_seconds_bucket{grinder_cluster="${CLUSTER}",le="10"} 1`);
      has(`grinder_ha_renew_latency_seconds_bucket{grinder_cluster="${CLUSTER}",le="+Inf"} 1`);
      has(`grinder_ha_renew_latency_seconds_count{grinder_cluster="${CLUSTER}"} 1`);

      has(`grinder_readyz_ready{grinder_cluster="${CLUSTER}"} 1`);
      // Every sample carries the cluster, as its last label (the histogram's le comes after it).
      for (const l of lines) {
        if (l === '' || l.startsWith('#')) continue;
        assert.match(l, /grinder_cluster="grinder:leader:lock"(,le="[^"]+")?\} /, `no cluster label on ${l}`);
      }
      // Runtime metrics through @opentelemetry/instrumentation-runtime-node, cluster included.
      for (const name of Object.values(RuntimeMetric)) {
        assert.ok(
          lines.some((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_bucket{`)),
          `no ${name} in:\n${text}`,
        );
      }
      assert.ok(!text.includes('otel_scope'), 'no otel_scope_* labels');
      assert.ok(!text.includes('target_info'), 'no target_info');
      assert.ok(!text.includes('_total_total'), 'no doubled _total suffix');
      const counters = lines.filter((l) => l.startsWith('# TYPE grinder_') && l.endsWith(' counter')).map((l) => l.split(' ')[2]);
      assert.deepEqual([...counters].sort(), [
        'grinder_ha_barriers_total',
        'grinder_ha_lock_failures_total',
        'grinder_ha_redis_master_changes_total',
        'grinder_ha_redis_rollbacks_total',
        'grinder_ha_replica_acks_total',
        'grinder_ha_transitions_total',
      ]);
      // Every sample belongs to a family with HELP and TYPE.
      for (const l of lines) {
        if (l === '' || l.startsWith('#')) continue;
        const family = (l.split(/[{ ]/)[0] as string).replace(/_(bucket|sum|count)$/, '');
        if (!family.startsWith('grinder_')) continue;
        assert.ok(
          lines.includes(`# TYPE ${family} ${family === Metric.haRenewLatency ? 'histogram' : family.endsWith('_total') ? 'counter' : 'gauge'}`),
          `TYPE for ${l}`,
        );
        assert.ok(
          lines.some((x) => x.startsWith(`# HELP ${family} `)),
          `HELP for ${l}`,
        );
      }

      // The role is judged at scrape time.
      ha.setRole('standby');
      uptime = 62;
      const again = (await t.metricsText()).split('\n');
      assert.ok(again.includes(`grinder_ha_role{role="active",grinder_cluster="${CLUSTER}"} 0`));
      assert.ok(again.includes(`grinder_ha_role{role="standby",grinder_cluster="${CLUSTER}"} 1`));
      assert.ok(again.includes(`grinder_ha_is_leader{grinder_cluster="${CLUSTER}"} 0`));
      assert.ok(again.includes(`grinder_readyz_ready{grinder_cluster="${CLUSTER}"} 0`));
      assert.ok(again.includes(`grinder_uptime_seconds{grinder_cluster="${CLUSTER}"} 62`));
    } finally {
      await t.shutdown();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Spans and counts of InstrumentedLeaseLock

const LEASE: Lease = { token: 42, ver: '00ff' };
const REQUEST: AcquireRequest = { expectedVer: null, floor: 0, barrierMs: 10_000 };
const ANSWER_WITHIN_MS = 7_000;

/** A LeaseLock whose next answers the test sets; each call may move the fake clock. */
class ScriptedLock implements LeaseLock {
  readonly lockKey = LOCK_KEY;
  acquireAnswer: () => Promise<AcquireResult> = async () => ({ kind: 'acquired', lease: LEASE });
  renewAnswer: () => Promise<RenewResult> = async () => ({ kind: 'renewed', lease: LEASE });
  releaseAnswer: () => Promise<ReleaseResult> = async () => ({ kind: 'released', ver: '0100' });
  connected = true;
  closed = 0;
  listeners: ((e: LockEvent) => void)[] = [];
  calls: string[] = [];

  facts(): StoreFacts {
    return { maxmemoryPolicy: 'noeviction', durable: true, mode: 'standalone', master: '127.0.0.1:6379', masterChanges: 0, replicasAcked: null };
  }
  acquire(): Promise<AcquireResult> {
    this.calls.push('acquire');
    return this.acquireAnswer();
  }
  renew(lease: Lease): Promise<RenewResult> {
    this.calls.push(`renew ${lease.token}`);
    return this.renewAnswer();
  }
  release(lease: Lease): Promise<ReleaseResult> {
    this.calls.push(`release ${lease.token}`);
    return this.releaseAnswer();
  }
  handOver(lease: Lease, successor: string): Promise<ReleaseResult> {
    this.calls.push(`handOver ${lease.token} ${successor}`);
    return this.releaseAnswer();
  }
  abandon(): Promise<ReleaseResult> {
    this.calls.push('abandon');
    return this.releaseAnswer();
  }
  isConnected(): boolean {
    return this.connected;
  }
  subscribe(listener: (event: LockEvent) => void): void {
    this.listeners.push(listener);
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

describe('InstrumentedLeaseLock', () => {
  let exporter: InMemorySpanExporter;
  let tracerProvider: TracerProvider;
  let h: MetricsHarness;
  let inner: ScriptedLock;
  let lock: InstrumentedLeaseLock;
  let now: number;

  beforeEach(() => {
    exporter = new InMemorySpanExporter();
    tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    h = metricsHarness();
    inner = new ScriptedLock();
    now = 1_000;
    lock = new InstrumentedLeaseLock(
      inner,
      tracerProvider.getTracer('test'),
      h.instruments,
      INSTANCE_ID,
      pino({ level: 'silent' }),
      () => now,
      ANSWER_WITHIN_MS,
    );
  });

  afterEach(async () => {
    await tracerProvider.shutdown();
    await h.shutdown();
  });

  function spans(): ReadableSpan[] {
    return exporter.getFinishedSpans();
  }

  function onlySpan(): ReadableSpan {
    const s = spans();
    assert.equal(s.length, 1, `exactly one span, got ${s.map((x) => x.name).join(', ')}`);
    return s[0] as ReadableSpan;
  }

  async function failures(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of (await h.collect()).points(Metric.haLockFailures)) {
      if (p.value !== 0) out[`${String(p.attributes.operation)}/${String(p.attributes.reason)}`] = p.value;
    }
    return out;
  }

  it('passes the lock key through', () => {
    assert.equal(lock.lockKey, LOCK_KEY);
  });

  it('makes one grinder.ha.acquire span with instance, key, result and token', async () => {
    const r = await lock.acquire(REQUEST);
    assert.deepEqual(r, { kind: 'acquired', lease: LEASE });
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.acquire');
    assert.deepEqual(s.attributes, {
      'grinder.instance.id': INSTANCE_ID,
      'grinder.ha.lock_key': LOCK_KEY,
      'grinder.ha.result': 'acquired',
      'grinder.ha.fencing_token': 42,
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(await failures(), {});
  });

  it('reports the holder and its token when the lease is held by someone else', async () => {
    inner.acquireAnswer = async () => ({
      kind: 'observed',
      record: { state: 'held', ver: '0aa0', token: 41, ttlMs: 10_000, maxTtlMs: 10_000, instanceId: 'grinder-other-99999999', ours: false },
      newest: 41,
    });
    await lock.acquire(REQUEST);
    const s = onlySpan();
    assert.deepEqual(s.attributes, {
      'grinder.instance.id': INSTANCE_ID,
      'grinder.ha.lock_key': LOCK_KEY,
      'grinder.ha.result': 'held',
      'grinder.ha.holder': 'grinder-other-99999999',
      'grinder.ha.fencing_token': 41,
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(await failures(), {});
  });

  it('counts an anomaly at the lock key as a failure with its reason', async () => {
    inner.acquireAnswer = async () => ({ kind: 'anomaly', reason: 'wrong_type', detail: 'the lock key is a hash', remainingMs: -1 });
    const r = await lock.acquire(REQUEST);
    assert.equal(r.kind, 'anomaly');
    const s = onlySpan();
    assert.equal(s.attributes['grinder.ha.result'], 'anomaly');
    assert.equal(s.attributes['grinder.ha.failure_reason'], 'wrong_type');
    assert.equal(s.status.code, SpanStatusCode.ERROR);
    assert.deepEqual(await failures(), { 'acquire/wrong_type': 1 });
  });

  it('makes one grinder.ha.renew span and records the renew latency', async () => {
    inner.renewAnswer = async () => {
      now += 37;
      return { kind: 'renewed', lease: LEASE };
    };
    const r = await lock.renew(LEASE);
    assert.deepEqual(r, { kind: 'renewed', lease: LEASE });
    assert.deepEqual(inner.calls, ['renew 42']);
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.renew');
    assert.deepEqual(s.attributes, {
      'grinder.instance.id': INSTANCE_ID,
      'grinder.ha.lock_key': LOCK_KEY,
      'grinder.ha.fencing_token': 42,
      'grinder.ha.result': 'renewed',
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    const c = await h.collect();
    const hist = c.histogram(Metric.haRenewLatency);
    assert.equal(hist.count, 1);
    assert.equal(hist.sum, 0.037);
    assert.equal(hist.buckets.counts[BUCKETS_10S.indexOf(0.04)], 1); // 37 ms in (35.5 ms, 40 ms]
    assert.deepEqual(await failures(), {});
  });

  it('counts a renew that finds the lease lost as renew/lost', async () => {
    inner.renewAnswer = async () => {
      now += 5;
      return { kind: 'lost', found: 'held', holder: { instanceId: 'grinder-other-99999999', token: 43 } };
    };
    const r = await lock.renew(LEASE);
    assert.equal(r.kind, 'lost');
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.renew');
    assert.equal(s.attributes['grinder.ha.result'], 'lost');
    assert.equal(s.attributes['grinder.ha.holder'], 'grinder-other-99999999');
    assert.equal(s.attributes['grinder.ha.failure_reason'], 'lost');
    assert.equal(s.attributes['grinder.ha.fencing_token'], 42);
    assert.equal(s.status.code, SpanStatusCode.ERROR);
    assert.deepEqual(await failures(), { 'renew/lost': 1 });
    assert.equal((await h.collect()).histogram(Metric.haRenewLatency).count, 1);
  });

  it('counts a renew that times out as renew/timeout, sets ERROR, rethrows and still records latency', async () => {
    const err = new LockUnavailableError('renew', 'timeout', 'Redis did not answer within 2000 ms');
    inner.renewAnswer = async () => {
      now += 2_000;
      throw err;
    };
    await assert.rejects(lock.renew(LEASE), (e) => e === err);
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.renew');
    assert.equal(s.attributes['grinder.ha.result'], 'error');
    assert.equal(s.attributes['grinder.ha.failure_reason'], 'timeout');
    assert.equal(s.attributes['grinder.ha.fencing_token'], 42);
    assert.deepEqual(s.status, { code: SpanStatusCode.ERROR, message: 'Redis did not answer within 2000 ms' });
    assert.deepEqual(await failures(), { 'renew/timeout': 1 });
    const hist = (await h.collect()).histogram(Metric.haRenewLatency);
    assert.equal(hist.count, 1);
    assert.equal(hist.sum, 2);
  });

  it('counts a connection failure on acquire as acquire/connection', async () => {
    inner.acquireAnswer = async () => {
      throw new LockUnavailableError('acquire', 'connection', 'Redis connection is not ready');
    };
    await assert.rejects(lock.acquire(REQUEST), LockUnavailableError);
    assert.equal(onlySpan().attributes['grinder.ha.failure_reason'], 'connection');
    assert.deepEqual(await failures(), { 'acquire/connection': 1 });
  });

  it('counts an unexpected error as script_error', async () => {
    inner.releaseAnswer = async () => {
      throw new Error('ERR something odd');
    };
    await assert.rejects(lock.release(LEASE), /ERR something odd/);
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.release');
    assert.equal(s.status.code, SpanStatusCode.ERROR);
    assert.deepEqual(await failures(), { 'release/script_error': 1 });
  });

  it('makes one grinder.ha.release span', async () => {
    const r = await lock.release(LEASE);
    assert.deepEqual(r, { kind: 'released', ver: '0100' });
    const s = onlySpan();
    assert.equal(s.name, 'grinder.ha.release');
    assert.deepEqual(s.attributes, {
      'grinder.instance.id': INSTANCE_ID,
      'grinder.ha.lock_key': LOCK_KEY,
      'grinder.ha.fencing_token': 42,
      'grinder.ha.result': 'released',
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(await failures(), {});
  });

  it('counts releasing a lease that is no longer ours as release/lost', async () => {
    inner.releaseAnswer = async () => ({ kind: 'not_held' });
    await lock.release(LEASE);
    assert.equal(onlySpan().attributes['grinder.ha.result'], 'not_held');
    assert.deepEqual(await failures(), { 'release/lost': 1 });
  });

  it('traces abandon() as a release and does not count "nothing to abandon" as a failure', async () => {
    inner.releaseAnswer = async () => ({ kind: 'not_held' });
    assert.deepEqual(await lock.abandon(), { kind: 'not_held' });
    assert.equal(onlySpan().name, 'grinder.ha.release');
    assert.equal(onlySpan().attributes['grinder.ha.result'], 'nothing_to_abandon');
    assert.deepEqual(await failures(), {});
    inner.releaseAnswer = async () => ({ kind: 'released', ver: '0101' });
    await lock.abandon();
    assert.equal(spans()[1]?.attributes['grinder.ha.result'], 'abandoned');
    assert.deepEqual(inner.calls, ['abandon', 'abandon']);
  });

  it('makes exactly one span per operation, each ended', async () => {
    await lock.acquire(REQUEST);
    await lock.renew(LEASE);
    await lock.renew(LEASE);
    await lock.release(LEASE);
    assert.deepEqual(
      spans().map((s) => s.name),
      ['grinder.ha.acquire', 'grinder.ha.renew', 'grinder.ha.renew', 'grinder.ha.release'],
    );
    assert.ok(spans().every((s) => s.ended));
    // Only renewals are latency samples.
    assert.equal((await h.collect()).histogram(Metric.haRenewLatency).count, 2);
  });

  it('judges Redis reachable from what lease operations got back, not only from the socket', async () => {
    // Nothing tried yet: the socket state is all there is.
    assert.equal(lock.isConnected(), true);
    inner.connected = false;
    assert.equal(lock.isConnected(), false);
    inner.connected = true;

    await lock.renew(LEASE);
    assert.equal(lock.isConnected(), true, 'answered just now');
    // A black-holed link: the socket stays open, the renewal times out.
    inner.renewAnswer = async () => {
      now += 2_000;
      throw new LockUnavailableError('renew', 'timeout', 'Redis did not answer within 2000 ms');
    };
    await assert.rejects(lock.renew(LEASE));
    assert.equal(lock.isConnected(), false, 'the last operation got no answer');
    // Any answer counts, a lease held by someone else and a rejected script included.
    inner.acquireAnswer = async () => ({
      kind: 'observed',
      record: { state: 'held', ver: '0bb0', token: 43, ttlMs: 10_000, maxTtlMs: 10_000, instanceId: 'grinder-other-99999999', ours: false },
      newest: 43,
    });
    await lock.acquire(REQUEST);
    assert.equal(lock.isConnected(), true);
    inner.releaseAnswer = async () => {
      throw new LockUnavailableError('release', 'script_error', 'NOSCRIPT');
    };
    await assert.rejects(lock.release(LEASE));
    assert.equal(lock.isConnected(), true, 'an error reply is an answer');
    inner.acquireAnswer = async () => {
      throw new LockUnavailableError('acquire', 'connection', 'connection reset');
    };
    await assert.rejects(lock.acquire(REQUEST));
    assert.equal(lock.isConnected(), false);
    // An answer goes stale when no operation has got one for longer than answerWithinMs.
    inner.acquireAnswer = async () => ({ kind: 'barrier', ver: '0cc0', ms: 10_000, reason: 'data_loss', newest: 1 });
    await lock.acquire(REQUEST);
    now += ANSWER_WITHIN_MS;
    assert.equal(lock.isConnected(), true, 'exactly answerWithinMs old');
    now += 1;
    assert.equal(lock.isConnected(), false, 'older than answerWithinMs');
  });

  it('delegates events and close', async () => {
    inner.connected = false;
    assert.equal(lock.isConnected(), false);
    inner.connected = true;
    assert.equal(lock.isConnected(), true);
    const seen: LockEvent[] = [];
    lock.subscribe((e) => seen.push(e));
    for (const l of inner.listeners) l({ kind: 'connected' });
    assert.deepEqual(seen, [{ kind: 'connected' }]);
    await lock.close();
    assert.equal(inner.closed, 1);
    assert.deepEqual(spans(), []);
  });
});
