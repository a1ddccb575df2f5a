// The standard OTEL_* variables, each against a real replica (node dist/main.js) and an OTLP
// collector in the test process.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { e2eKit } from '../support/e2e';
import { attributeMap, OtlpReceiver, type HttpReceiverOptions, type JsonSpan } from '../support/otlp-receiver';
import { MAIN_JS, type Replica } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

const { redis, replica, haEnv, becomes, onCleanup } = e2eKit(1_000, 250);

async function receiver(kind: 'http' | 'grpc' = 'http', opts: HttpReceiverOptions = {}): Promise<OtlpReceiver> {
  const r = kind === 'http' ? await OtlpReceiver.http(opts) : await OtlpReceiver.grpc();
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

async function renewals(r: Replica, n: number): Promise<true> {
  return waitFor(`${n} renewals`, async () => {
    const m = /^grinder_ha_renew_latency_seconds_count(?:\{[^}]*\})? (\d+)/m.exec((await r.get('/metrics')).body);
    return Number(m?.[1] ?? 0) >= n ? true : undefined;
  });
}

/** Waits for a few renewals (each one a span), then stops the replica, which flushes what is pending. */
async function renewThenStop(r: Replica): Promise<void> {
  await renewals(r, 3);
  assert.equal(await r.stop('SIGTERM'), 0);
}

/** `A=1 B=2`, for test names of table-driven cases. */
const shown = (env: Record<string, string>): string =>
  Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

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
  describe('OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG', () => {
    const cases: [Record<string, string>, boolean][] = [
      [{ OTEL_TRACES_SAMPLER: 'always_on' }, true],
      [{ OTEL_TRACES_SAMPLER: 'always_off' }, false],
      [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1' }, true],
      [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, false],
      [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, false],
    ];
    cases.forEach(([env, exported], i) => {
      it(`${shown(env)}: ${exported ? 'spans are exported' : 'nothing is exported'}`, async () => {
        const rcv = await receiver();
        const r = await tracedReplica(`sampler-${i}`, { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, ...env });
        await renewThenStop(r);
        if (exported) assert.ok(rcv.text().includes('grinder.ha.renew'), 'renew spans reached the collector');
        else assert.equal(rcv.requests.length, 0, 'no span was sampled, so no export was sent');
      });
    });
  });

  for (const withGeneric of [false, true]) {
    it(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is, without /v1/traces appended${withGeneric ? ', and wins over OTEL_EXPORTER_OTLP_ENDPOINT' : ''}`, async () => {
      const generic = await receiver();
      const rcv = await receiver();
      await tracedReplica(`traces-endpoint-${withGeneric}`, {
        ...(withGeneric ? { OTEL_EXPORTER_OTLP_ENDPOINT: generic.url } : {}),
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${rcv.url}/collector/spans`,
      });
      await spansNamed(rcv, 'grinder.ha.renew');
      assert.deepEqual([...new Set(rcv.requests.map((q) => q.path))], ['/collector/spans']);
      assert.equal(generic.requests.length, 0);
    });
  }

  it('OTEL_EXPORTER_OTLP_TRACES_HEADERS are sent beside OTEL_EXPORTER_OTLP_HEADERS, win on the same header, and are printed nowhere', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('traces-headers', {
      OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url,
      OTEL_EXPORTER_OTLP_HEADERS: 'x-team=ha,x-route=generic',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: `authorization=${encodeURIComponent('Bearer traces-t0ken-kept-private')},x-route=traces`,
      OTEL_LOG_LEVEL: 'all',
    });
    await spansNamed(rcv, 'grinder.ha.renew');
    const headers = rcv.requests[0]?.headers;
    assert.equal(headers?.authorization, 'Bearer traces-t0ken-kept-private');
    assert.equal(headers?.['x-team'], 'ha');
    assert.equal(headers?.['x-route'], 'traces');
    await r.stop('SIGTERM');
    const printed = JSON.stringify(r.logs) + r.stderr.join('');
    assert.ok(!printed.includes('traces-t0ken-kept-private'));
  });

  it('OTEL_EXPORTER_OTLP_TIMEOUT: an export the collector does not answer is given up after that long (default 10 s)', async () => {
    const TIMEOUT_MS = 500;
    const rcv = await receiver('http', { answer: false });
    await tracedReplica('timeout', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_TIMEOUT: String(TIMEOUT_MS) });
    const held = await waitFor('the exporter to give up on its first request', () => rcv.requests[0]?.heldMs, 10_000);
    // The exporter's socket timer counts from its last write, a moment before the request arrived
    // here; the upper bound leaves room for a slow event loop and stays far below the default.
    console.log(`# OTEL_EXPORTER_OTLP_TIMEOUT=${TIMEOUT_MS}: given up ${held.toFixed(0)} ms after it arrived`);
    assert.ok(held >= TIMEOUT_MS / 2 && held < TIMEOUT_MS + 2_000, `given up ${held.toFixed(0)} ms after it arrived`);
  });

  const compression: [Record<string, string>, boolean][] = [
    [{ OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }, true],
    [{ OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip', OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'none' }, false],
  ];
  compression.forEach(([env, gzip], i) => {
    it(`${shown(env)}: payloads arrive ${gzip ? 'gzip-compressed and decode' : 'uncompressed'}`, async () => {
      const rcv = await receiver();
      await tracedReplica(`compression-${i}`, { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', ...env });
      await spansNamed(rcv, 'grinder.ha.renew');
      // The receiver gunzips a body sent with content-encoding gzip, so parsed spans prove it was gzip.
      assert.deepEqual(new Set(rcv.requests.map((q) => q.headers['content-encoding'])), new Set([gzip ? 'gzip' : undefined]));
      assert.ok(rcv.jsonSpans().some((s) => s.name === 'grinder.ha.acquire'));
    });
  });

  it('OTEL_BSP_SCHEDULE_DELAY: exports follow each other that far apart (default 5 s)', async () => {
    const DELAY_MS = 1_000;
    const rcv = await receiver();
    await tracedReplica('bsp-delay', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_BSP_SCHEDULE_DELAY: String(DELAY_MS) });
    await waitFor('three exports', () => (rcv.requests.length >= 3 ? true : undefined), 15_000);
    // Spans end at least every renew interval (250 ms), and the timer starts with the first span
    // after an export: the gap is the delay plus at most one renew interval and the export itself.
    const gaps = rcv.requests.slice(1, 3).map((q, i) => q.at - (rcv.requests[i]?.at ?? 0));
    console.log(`# OTEL_BSP_SCHEDULE_DELAY=${DELAY_MS}: exports ${gaps.map((g) => g.toFixed(0)).join(', ')} ms apart`);
    for (const gap of gaps) assert.ok(gap >= DELAY_MS * 0.9 && gap < DELAY_MS + 1_500, `exports ${gaps.map((g) => g.toFixed(0)).join(', ')} ms apart`);
  });

  it('OTEL_BSP_MAX_EXPORT_BATCH_SIZE: a full batch is exported at once, never more spans than that per request', async () => {
    const rcv = await receiver();
    // With a delay no test waits out, only full batches leave before the stop.
    const r = await tracedReplica('bsp-batch', {
      OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '600000',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2',
    });
    await waitFor('three exports', () => (rcv.requests.length >= 3 ? true : undefined), 10_000);
    const beforeStop = rcv.requests.length;
    assert.deepEqual(
      rcv.requests.map((q) => rcv.jsonSpans([q]).length),
      Array<number>(beforeStop).fill(2),
    );
    assert.equal(await r.stop('SIGTERM'), 0);
    for (const q of rcv.requests.slice(beforeStop)) assert.ok(rcv.jsonSpans([q]).length <= 2, 'the stop flushes in batches of 2 too');
  });

  it('OTEL_BSP_SCHEDULE_DELAY longer than the run: nothing is exported, even after the 5 s default, until the stop flushes', async () => {
    const rcv = await receiver();
    const r = await tracedReplica('bsp-flush', { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_BSP_SCHEDULE_DELAY: '600000' });
    // 24 renewals 250 ms apart outlast the default delay, which would have sent a batch by then.
    await renewals(r, 24);
    assert.equal(rcv.requests.length, 0);
    assert.equal(await r.stop('SIGTERM'), 0);
    assert.ok(rcv.text().includes('grinder.ha.renew'), 'the stop flushed the pending spans');
  });

  for (const variable of ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'OTEL_BSP_MAX_QUEUE_SIZE']) {
    it(`${variable}=0 (no span would ever be exported) is refused at start-up: exit 2 and one line`, () => {
      const r = spawnSync(process.execPath, [MAIN_JS], { env: { PATH: process.env.PATH, [variable]: '0' }, encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2);
      assert.equal(r.stderr, `grinder: invalid configuration: ${variable}="0": must be a whole number ≥ 1\n`);
    });
  }

  describe('span limits', () => {
    const cases: { env: Record<string, string>; count?: number; length?: number }[] = [
      { env: { OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '2', OTEL_ATTRIBUTE_COUNT_LIMIT: '5' }, count: 2 },
      { env: { OTEL_ATTRIBUTE_COUNT_LIMIT: '3' }, count: 3 },
      { env: { OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '4' }, length: 4 },
    ];
    cases.forEach(({ env, count, length }, i) => {
      it(`${shown(env)}: ${count !== undefined ? `at most ${count} attributes per span` : `string values cut to ${length} characters`}`, async () => {
        const rcv = await receiver();
        await tracedReplica(`limits-${i}`, { OTEL_EXPORTER_OTLP_ENDPOINT: rcv.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', ...env });
        await spansNamed(rcv, 'grinder.ha.renew');
        const spans = rcv.jsonSpans();
        const renew = spans.find((s) => s.name === 'grinder.ha.renew');
        assert.ok(renew);
        if (count !== undefined) {
          for (const s of spans) assert.ok(s.attributes.length <= count, `${s.name} has ${s.attributes.length} attributes`);
          // A renewal sets eight attributes (see the semantic-conventions test above).
          assert.equal(renew.attributes.length, count);
          assert.ok((renew.droppedAttributesCount ?? 0) > 0, 'the dropped attributes are counted');
        }
        if (length !== undefined) {
          const strings = spans.flatMap((s) => Object.values(attrs(s)).filter((v) => typeof v === 'string'));
          assert.ok(strings.length > 0);
          for (const v of strings) assert.ok(v.length <= length, `"${v}" is longer than ${length}`);
          assert.equal(attrs(renew)['grinder.ha.lock_key'], 'grinder:leader:lock'.slice(0, length));
        }
      });
    });
  });

  it('OTEL_TRACES_EXPORTER=otlp without an endpoint sends to the SDK default http://localhost:4318/v1/traces; with neither, nothing is sent', async () => {
    let rcv: OtlpReceiver;
    try {
      rcv = await OtlpReceiver.http({ port: 4318 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      throw new Error('something else listens on port 4318, the default port this test has to receive on: stop it (an OTLP collector?) and run again', {
        cause: err,
      });
    }
    onCleanup(() => rcv.close());
    await renewThenStop(await tracedReplica('no-exporter', {}));
    assert.equal(rcv.requests.length, 0, 'no endpoint and no OTEL_TRACES_EXPORTER: spans go nowhere');
    const r = await tracedReplica('default-endpoint', { OTEL_TRACES_EXPORTER: 'otlp' });
    await spansNamed(rcv, 'grinder.ha.renew');
    const first = rcv.requests[0];
    assert.equal(first?.headers.host, 'localhost:4318');
    assert.equal(first?.path, '/v1/traces');
    assert.equal(first?.headers['content-type'], 'application/x-protobuf');
    assert.equal(r.logs.find((l) => l.msg === 'grinder started')?.traces_exported, true);
  });
});
