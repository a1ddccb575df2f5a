import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isSpanContextValid, SpanStatusCode, type Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  MeterProvider,
  MetricReader,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
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
} from '../../src/ha/lock';
import { ROLES, type Role } from '../../src/ha/role';
import { InstrumentedLeaseLock } from '../../src/telemetry/instrumented-lock';
import { createInstruments, observeState, renewLatencyBuckets, type HaInstruments, type MetricSources } from '../../src/telemetry/metrics';
import { LOCK_FAILURE_REASONS, Metric, METER_NAME } from '../../src/telemetry/names';
import { otlpTracesConfigured, startTelemetry } from '../../src/telemetry/sdk';
import { FakeHa } from '../support/fake-ha';

const INSTANCE_ID = 'grinder-test-0123abcd';
const VERSION = '1.2.3';
const LOCK_KEY = 'grinder:leader:lock';
const OPERATIONS = ['acquire', 'renew', 'release'] as const;
const BUCKETS_10S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

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

function metricsHarness(opts: { haEnabled?: boolean; lockTtlMs?: number | null; renewIntervalMs?: number | null } = {}): MetricsHarness {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter(METER_NAME, VERSION);
  const ha = new FakeHa({ haEnabled: opts.haEnabled ?? true });
  const lockTtlMs = opts.lockTtlMs === undefined ? 10_000 : opts.lockTtlMs;
  const src: MetricSources & { uptime: number } = {
    ha,
    instanceId: INSTANCE_ID,
    version: VERSION,
    lockTtlMs,
    renewIntervalMs: opts.renewIntervalMs === undefined ? 3_000 : opts.renewIntervalMs,
    uptime: 0,
    uptimeSeconds() {
      return this.uptime;
    },
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
      },
    );
    assert.deepEqual([...LOCK_FAILURE_REASONS], ['timeout', 'connection', 'lost', 'wrong_type', 'invalid_value', 'script_error']);
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
    // The OTel SDK exports a histogram only once it has a sample: before the first renewal
    // (and on a replica that never led) grinder_ha_renew_latency_seconds is absent.
    const beforeRenew = await h.collect();
    assert.equal(beforeRenew.byName.has(Metric.haRenewLatency), false);
    h.instruments.renewLatency(0.002);
    const c = await h.collect();
    assert.deepEqual(c.names(), [
      'grinder_build_info',
      'grinder_ha_enabled',
      'grinder_ha_fencing_token',
      'grinder_ha_is_leader',
      'grinder_ha_lease_remaining_seconds',
      'grinder_ha_lock_failures_total',
      'grinder_ha_lock_ttl_seconds',
      'grinder_ha_redis_up',
      'grinder_ha_renew_interval_seconds',
      'grinder_ha_renew_latency_seconds',
      'grinder_ha_role',
      'grinder_ha_transitions_total',
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

  it('leaves the fencing token out until one has been seen', async () => {
    h.ha.set({ role: 'unknown', fencingToken: null });
    const c = await h.collect();
    assert.deepEqual(c.points(Metric.haFencingToken), []);
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
    //                      0.001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 +Inf
    assert.deepEqual(hist.buckets.counts, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.equal(hist.count, 3);
    assert.equal(hist.sum, 0.0004 + 0.037 + 12);
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
      for (const absent of [Metric.haLockTtl, Metric.haRenewInterval, Metric.haRedisUp, Metric.haFencingToken, Metric.haLockFailures]) {
        assert.deepEqual(c.points(absent), [], `${absent} should be absent`);
      }
      assert.equal(c.points(Metric.haTransitions).length, 4);
    } finally {
      await h.shutdown();
    }
  });
});

describe('renewLatencyBuckets', () => {
  const cases: [number, number[]][] = [
    [10_000, BUCKETS_10S],
    [1_000, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]],
    [1_500, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5]],
    [2_500, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]],
    [30_000, [...BUCKETS_10S, 25, 30]],
  ];
  for (const [ttl, expected] of cases) {
    it(`goes from 0.001 to the TTL for ${ttl} ms`, () => {
      assert.deepEqual(renewLatencyBuckets(ttl), expected);
    });
  }

  it('uses the configured TTL for the histogram', async () => {
    const h = metricsHarness({ lockTtlMs: 2_500, renewIntervalMs: 800 });
    try {
      h.instruments.renewLatency(2);
      const hist = (await h.collect()).histogram(Metric.haRenewLatency);
      assert.deepEqual(hist.buckets.boundaries, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
      assert.equal(hist.buckets.counts[10], 1);
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

    const t = startTelemetry({ instanceId: INSTANCE_ID, version: VERSION, env: {} });
    try {
      assert.equal(t.tracesExported, false);
      // Spans are still real (their ids go into the logs) even though nothing exports them.
      const span = t.tracer.startSpan('probe');
      assert.equal(isSpanContextValid(span.spanContext()), true);
      span.end();

      const ha = new FakeHa({ role: 'active', fencingToken: 42, leaseRemainingMs: 9_500, redisConnected: true });
      let uptime = 61.5;
      observeState(t.meter, { ha, instanceId: INSTANCE_ID, version: VERSION, lockTtlMs: 10_000, renewIntervalMs: 3_000, uptimeSeconds: () => uptime });
      const instruments = createInstruments(t.meter, { lockTtlMs: 10_000, live: false });
      instruments.lockFailure('renew', 'lost');
      instruments.transition('standby', 'active');
      instruments.renewLatency(0.004);

      const text = await t.metricsText();
      const lines = text.split('\n');
      const has = (line: string): void => assert.ok(lines.includes(line), `missing line ${JSON.stringify(line)} in:\n${text}`);

      has('grinder_ha_role{role="active"} 1');
      has('grinder_ha_role{role="standby"} 0');
      has('grinder_ha_role{role="unknown"} 0');
      has('grinder_ha_is_leader 1');
      has('grinder_ha_enabled 1');
      has('grinder_ha_fencing_token 42');
      has('grinder_ha_lease_remaining_seconds 9.5');
      has('grinder_ha_lock_ttl_seconds 10');
      has('grinder_ha_renew_interval_seconds 3');
      has('grinder_ha_redis_up 1');
      has('grinder_up 1');
      has('grinder_uptime_seconds 61.5');
      has(`grinder_build_info{version="${VERSION}",instance_id="${INSTANCE_ID}"} 1`);
      has('# TYPE grinder_ha_lock_failures_total counter');
      has('grinder_ha_lock_failures_total{operation="renew",reason="lost"} 1');
      has('grinder_ha_lock_failures_total{operation="acquire",reason="timeout"} 0');
      has('# TYPE grinder_ha_transitions_total counter');
      has('grinder_ha_transitions_total{from="standby",to="active"} 1');
      has('# TYPE grinder_ha_renew_latency_seconds histogram');
      has('grinder_ha_renew_latency_seconds_bucket{le="0.001"} 0');
      has('grinder_ha_renew_latency_seconds_bucket{le="0.005"} 1');
      has('grinder_ha_renew_latency_seconds_bucket{le="10"} 1');
      has('grinder_ha_renew_latency_seconds_bucket{le="+Inf"} 1');
      has('grinder_ha_renew_latency_seconds_count 1');

      assert.ok(!text.includes('otel_scope'), 'no otel_scope_* labels');
      assert.ok(!text.includes('target_info'), 'no target_info');
      assert.ok(!text.includes('_total_total'), 'no doubled _total suffix');
      const counters = lines.filter((l) => l.startsWith('# TYPE ') && l.endsWith(' counter')).map((l) => l.split(' ')[2]);
      assert.deepEqual(counters, ['grinder_ha_lock_failures_total', 'grinder_ha_transitions_total']);
      // Every sample belongs to a family with HELP and TYPE.
      for (const l of lines) {
        if (l === '' || l.startsWith('#')) continue;
        const family = (l.split(/[{ ]/)[0] as string).replace(/_(bucket|sum|count)$/, '');
        assert.ok(lines.includes(`# TYPE ${family} ${family === Metric.haRenewLatency ? 'histogram' : family.endsWith('_total') ? 'counter' : 'gauge'}`), `TYPE for ${l}`);
        assert.ok(lines.some((x) => x.startsWith(`# HELP ${family} `)), `HELP for ${l}`);
      }

      // The role is judged at scrape time.
      ha.setRole('standby');
      uptime = 62;
      const again = (await t.metricsText()).split('\n');
      assert.ok(again.includes('grinder_ha_role{role="active"} 0'));
      assert.ok(again.includes('grinder_ha_role{role="standby"} 1'));
      assert.ok(again.includes('grinder_ha_is_leader 0'));
      assert.ok(again.includes('grinder_uptime_seconds 62'));
    } finally {
      await t.shutdown();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Spans and counts of InstrumentedLeaseLock

const LEASE: Lease = { token: 42, value: `42|00ff|${INSTANCE_ID}` };

/** A LeaseLock whose next answers the test sets; each call may move the fake clock. */
class ScriptedLock implements LeaseLock {
  readonly lockKey = LOCK_KEY;
  acquireAnswer: () => Promise<AcquireResult> = async () => ({ kind: 'acquired', lease: LEASE });
  renewAnswer: () => Promise<RenewResult> = async () => ({ kind: 'renewed' });
  releaseAnswer: () => Promise<ReleaseResult> = async () => ({ kind: 'released' });
  connected = true;
  closed = 0;
  listeners: ((e: LockEvent) => void)[] = [];
  calls: string[] = [];

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
    lock = new InstrumentedLeaseLock(inner, tracerProvider.getTracer('test'), h.instruments, INSTANCE_ID, pino({ level: 'silent' }), () => now);
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
    const r = await lock.acquire();
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
    inner.acquireAnswer = async () => ({ kind: 'held', holder: { instanceId: 'grinder-other-99999999', token: 41 }, remainingMs: 5_000 });
    await lock.acquire();
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
    const r = await lock.acquire();
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
      return { kind: 'renewed' };
    };
    const r = await lock.renew(LEASE);
    assert.deepEqual(r, { kind: 'renewed' });
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
    assert.equal(hist.buckets.counts[BUCKETS_10S.indexOf(0.05)], 1);
    assert.deepEqual(await failures(), {});
  });

  it('counts a renew that finds the lease lost as renew/lost', async () => {
    inner.renewAnswer = async () => {
      now += 5;
      return { kind: 'lost', holder: { instanceId: 'grinder-other-99999999', token: 43 }, remainingMs: 9_000 };
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
    await assert.rejects(lock.acquire(), LockUnavailableError);
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
    assert.deepEqual(r, { kind: 'released' });
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
    inner.releaseAnswer = async () => ({ kind: 'released' });
    await lock.abandon();
    assert.equal(spans()[1]?.attributes['grinder.ha.result'], 'abandoned');
    assert.deepEqual(inner.calls, ['abandon', 'abandon']);
  });

  it('makes exactly one span per operation, each ended', async () => {
    await lock.acquire();
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

  it('delegates connection state, events and close', async () => {
    inner.connected = false;
    assert.equal(lock.isConnected(), false);
    inner.connected = true;
    assert.equal(lock.isConnected(), true);
    const seen: LockEvent[] = [];
    lock.subscribe((e) => seen.push(e));
    for (const l of inner.listeners) l('connected');
    assert.deepEqual(seen, ['connected']);
    await lock.close();
    assert.equal(inner.closed, 1);
    assert.deepEqual(spans(), []);
  });
});
