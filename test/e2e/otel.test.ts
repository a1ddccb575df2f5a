// The standard OTEL_* variables, each against a real replica (node dist/main.js) and an OTLP
// collector in the test process.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { e2eKit } from '../support/e2e';
import { attributeMap, OtlpReceiver, type JsonSpan } from '../support/otlp-receiver';
import type { Replica } from '../support/replica';
import { waitFor } from '../support/wait';

const { redis, replica, haEnv, becomes, onCleanup } = e2eKit(1_000, 250);

async function receiver(kind: 'http' | 'grpc' = 'http'): Promise<OtlpReceiver> {
  const r = kind === 'http' ? await OtlpReceiver.http() : await OtlpReceiver.grpc();
  onCleanup(() => r.close());
  return r;
}

/** An ACTIVE replica on a Redis of its own, exporting with the given OTEL_* settings. */
async function tracedReplica(id: string, otel: Record<string, string>): Promise<Replica> {
  const server = await redis();
  const r = await replica(haEnv(server.url, id, { OTEL_BSP_SCHEDULE_DELAY: '100', ...otel }));
  await becomes(r, 'active');
  return r;
}

const spansNamed = (rcv: OtlpReceiver, name: string): Promise<true> =>
  waitFor(`a ${name} span at the collector`, () => (rcv.text().includes(name) ? true : undefined), 10_000);

/** Waits for a few renewals (each one a span), then stops the replica, which flushes what is pending. */
async function renewThenStop(r: Replica): Promise<void> {
  await waitFor('three renewals', async () => {
    const m = /^grinder_ha_renew_latency_seconds_count(?:\{[^}]*\})? (\d+)/m.exec((await r.get('/metrics')).body);
    return Number(m?.[1] ?? 0) >= 3 ? true : undefined;
  });
  assert.equal(await r.stop('SIGTERM'), 0);
}

const attrs = (s: JsonSpan): Record<string, unknown> => attributeMap(s.attributes);

describe('standard OTEL_* variables', () => {
  it('OTEL_EXPORTER_OTLP_PROTOCOL unset: OTLP/HTTP with protobuf, the SDK default', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('proto', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url });
    await spansNamed(rcv, 'grinder.ha.renew');
    const first = rcv.requests[0];
    assert.equal(first?.path, '/v1/traces');
    assert.equal(first?.headers['content-type'], 'application/x-protobuf');
    assert.equal(r.logs.find((l) => l.msg === 'grinder started')?.traces_exported, true);
  });

  it('OTEL_EXPORTER_OTLP_PROTOCOL=http/json: OTLP/HTTP with JSON', async () => {
    const rcv = await receiver();
    await tracedReplica('json', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    await spansNamed(rcv, 'grinder.ha.renew');
    assert.equal(rcv.requests[0]?.headers['content-type'], 'application/json');
    assert.ok(rcv.jsonSpans().some((s) => s.name === 'grinder.ha.acquire'));
  });

  it('OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the TraceService/Export call over HTTP/2', async () => {
    const rcv = await receiver('grpc');
    await tracedReplica('grpc', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    await spansNamed(rcv, 'grinder.ha.renew');
    assert.equal(rcv.requests[0]?.path, '/opentelemetry.proto.collector.trace.v1.TraceService/Export');
    assert.equal(rcv.requests[0]?.headers['content-type'], 'application/grpc');
  });

  it('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL', async () => {
    const rcv = await receiver();
    await tracedReplica('traces-protocol', {
      OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    });
    await spansNamed(rcv, 'grinder.ha.renew');
    assert.equal(rcv.requests[0]?.headers['content-type'], 'application/json');
  });

  it('OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME shape the resource; the instance id stays GRINDER_INSTANCE_ID', async () => {
    const rcv = await receiver();
    await tracedReplica('resourceful', {
      OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging,team=ha%20core,service.name=overridden',
      OTEL_SERVICE_NAME: 'grinder-eu',
    });
    await spansNamed(rcv, 'grinder.ha.acquire');
    const resource = rcv.jsonResource();
    assert.equal(resource['deployment.environment.name'], 'staging');
    assert.equal(resource.team, 'ha core');
    assert.equal(resource['service.name'], 'grinder-eu', 'OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES');
    assert.equal(resource['service.instance.id'], 'resourceful');
  });

  it('OTEL_EXPORTER_OTLP_HEADERS reach the collector and are printed nowhere', async () => {
    const rcv = await receiver();
    const token = 'Bearer t0ken-that-must-stay-private';
    const r = await tracedReplica('headers', {
      OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url,
      OTEL_EXPORTER_OTLP_HEADERS: `authorization=${encodeURIComponent(token)}`,
      OTEL_LOG_LEVEL: 'all',
    });
    await spansNamed(rcv, 'grinder.ha.renew');
    assert.equal(rcv.requests[0]?.headers.authorization, token);
    await r.stop('SIGTERM');
    const printed = JSON.stringify(r.logs) + r.stderr.join('');
    assert.ok(!printed.includes('t0ken-that-must-stay-private'));
  });

  it('lease spans carry the database semantic conventions, and each Redis command is a child span', async () => {
    const rcv = await receiver();
    const server = await redis();
    const r = await replica(
      haEnv(server.url, 'semconv', { OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }),
    );
    await becomes(r, 'active');
    await spansNamed(rcv, 'grinder.ha.renew');
    const spans = rcv.jsonSpans();
    const renew = spans.find((s) => s.name === 'grinder.ha.renew');
    assert.ok(renew);
    assert.deepEqual(Object.fromEntries(Object.entries(attrs(renew)).filter(([k]) => !k.startsWith('grinder.'))), {
      'db.system.name': 'redis',
      'server.address': '127.0.0.1',
      'server.port': server.port,
      'db.namespace': '0',
    });
    const child = spans.find((s) => s.parentSpanId === renew.spanId);
    assert.ok(child, 'the renewal has a child span');
    assert.equal(child.name, 'EVALSHA');
    assert.equal(child.kind, 3, 'SPAN_KIND_CLIENT');
    assert.equal(attrs(child)['db.operation.name'], 'EVALSHA');
    assert.equal(attrs(child)['db.system.name'], 'redis');
    assert.equal(attrs(child)['server.port'], server.port);
  });

  it('OTEL_TRACES_EXPORTER=none exports nothing, even with an endpoint set', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('none', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_TRACES_EXPORTER: 'none' });
    await renewThenStop(r);
    assert.equal(rcv.requests.length, 0);
    assert.equal(r.logs.find((l) => l.msg === 'grinder started')?.traces_exported, false);
  });

  it('OTEL_SDK_DISABLED=true exports nothing, and /metrics still works', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('disabled', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_SDK_DISABLED: 'true' });
    assert.match((await r.get('/metrics')).body, /^grinder_ha_is_leader(?:\{[^}]*\})? 1$/m);
    await renewThenStop(r);
    assert.equal(rcv.requests.length, 0);
  });

  it('OTEL_TRACES_EXPORTER=console prints each span as one JSON line on stderr, never on stdout', async () => {
    const r = await tracedReplica('console', { OTEL_TRACES_EXPORTER: 'console' });
    const spanLines = (): Record<string, unknown>[] =>
      r.stderr
        .join('')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitFor('a renew span on stderr', () => (spanLines().some((s) => s.name === 'grinder.ha.renew') ? true : undefined));
    const acquire = spanLines().find((s) => s.name === 'grinder.ha.acquire');
    assert.ok(acquire);
    assert.match(String(acquire.traceId), /^[0-9a-f]{32}$/);
    assert.deepEqual(r.stdoutNonJson, []);
    assert.ok(!r.logs.some((l) => l.name === 'grinder.ha.acquire'), 'spans do not go into the log stream');
  });

  it('OTEL_LOG_LEVEL=debug: the SDK diagnostics are JSON log lines (component otel), no free text on stdout', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('diag', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_LOG_LEVEL: 'debug', GRINDER_LOG_LEVEL: 'warn' });
    await spansNamed(rcv, 'grinder.ha.renew');
    const diag = r.logs.filter((l) => l.component === 'otel');
    assert.ok(diag.length > 0, 'some diagnostics were logged');
    assert.ok(
      diag.some((l) => l.level === 'debug'),
      'debug diagnostics pass although GRINDER_LOG_LEVEL=warn: OTEL_LOG_LEVEL decides for the SDK',
    );
    assert.deepEqual(r.stdoutNonJson, []);
  });
});
