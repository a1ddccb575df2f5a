import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { DiagLogLevel } from '@opentelemetry/api';
import pino from 'pino';
import { ConfigError } from '../../src/config';
import { PinoDiagLogger } from '../../src/telemetry/diag';
import { readOtelConfig } from '../../src/telemetry/otel-config';

function rejected(env: Record<string, string>): ConfigError {
  try {
    readOtelConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

describe('readOtelConfig', () => {
  it('exports nothing by default, over OTLP once an endpoint is set, http/protobuf unless told otherwise', () => {
    assert.deepEqual(readOtelConfig({}).traceExporters, []);
    assert.deepEqual(readOtelConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }).traceExporters, []);
    assert.deepEqual(readOtelConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).traceExporters, ['otlp']);
    assert.deepEqual(readOtelConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }).traceExporters, ['otlp']);
    assert.equal(readOtelConfig({}).otlpProtocol, 'http/protobuf');
  });

  it('reads OTEL_TRACES_EXPORTER as a list in which none wins', () => {
    assert.deepEqual(readOtelConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).traceExporters, ['otlp']);
    assert.deepEqual(readOtelConfig({ OTEL_TRACES_EXPORTER: 'console, otlp,console' }).traceExporters, ['console', 'otlp']);
    assert.deepEqual(readOtelConfig({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).traceExporters, []);
    assert.deepEqual(readOtelConfig({ OTEL_TRACES_EXPORTER: 'otlp,none' }).traceExporters, []);
  });

  it('OTEL_SDK_DISABLED=true turns every exporter off', () => {
    const c = readOtelConfig({ OTEL_SDK_DISABLED: 'TRUE', OTEL_TRACES_EXPORTER: 'otlp' });
    assert.equal(c.sdkDisabled, true);
    assert.deepEqual(c.traceExporters, []);
    assert.equal(readOtelConfig({ OTEL_SDK_DISABLED: 'false' }).sdkDisabled, false);
  });

  it('takes the traces-specific protocol over the generic one', () => {
    assert.equal(readOtelConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }).otlpProtocol, 'grpc');
    assert.equal(readOtelConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }).otlpProtocol, 'http/json');
  });

  it('reads OTEL_LOG_LEVEL in any case', () => {
    assert.equal(readOtelConfig({}).diagLogLevel, null);
    assert.equal(readOtelConfig({ OTEL_LOG_LEVEL: 'debug' }).diagLogLevel, DiagLogLevel.DEBUG);
    assert.equal(readOtelConfig({ OTEL_LOG_LEVEL: 'None' }).diagLogLevel, DiagLogLevel.NONE);
  });

  it('reads the sampler, its ratio, the span limits and the batch settings', () => {
    const c = readOtelConfig({
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_ATTRIBUTE_COUNT_LIMIT: '64',
      OTEL_SPAN_EVENT_COUNT_LIMIT: '8',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_MAX_QUEUE_SIZE: '512',
    });
    assert.deepEqual(c.sampler, { name: 'parentbased_traceidratio', ratio: 0.25 });
    assert.equal(c.spanLimits.attributeCountLimit, 64);
    assert.equal(c.spanLimits.eventCountLimit, 8);
    assert.equal(c.batch.scheduledDelayMillis, 100);
    assert.equal(c.batch.maxQueueSize, 512);
    assert.deepEqual(readOtelConfig({ OTEL_TRACES_SAMPLER: 'always_off' }).sampler, { name: 'always_off', ratio: 1 });
  });

  it('rejects what the SDK would only warn about, naming the variable and the choices', () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER', /one of otlp, console or none/],
      [{ OTEL_TRACES_EXPORTER: 'otlp,jaeger' }, 'OTEL_TRACES_EXPORTER', /jaeger are not supported/],
      [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http' }, 'OTEL_EXPORTER_OTLP_PROTOCOL', /http\/protobuf, http\/json, grpc/],
      [{ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'thrift' }, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', /http\/protobuf/],
      [{ OTEL_LOG_LEVEL: 'loud' }, 'OTEL_LOG_LEVEL', /NONE, ERROR, WARN, INFO, DEBUG, VERBOSE, ALL/],
      [{ OTEL_SDK_DISABLED: 'yes' }, 'OTEL_SDK_DISABLED', /true or false/],
      [{ OTEL_TRACES_SAMPLER: 'sometimes' }, 'OTEL_TRACES_SAMPLER', /always_on/],
      [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, 'OTEL_TRACES_SAMPLER_ARG', /from 0 to 1/],
      [{ OTEL_BSP_SCHEDULE_DELAY: '-1' }, 'OTEL_BSP_SCHEDULE_DELAY', /≥ 0/],
      [{ OTEL_METRICS_EXPORTER: 'otlp' }, 'OTEL_METRICS_EXPORTER', /served for Prometheus on \/metrics/],
      [{ OTEL_LOGS_EXPORTER: 'otlp' }, 'OTEL_LOGS_EXPORTER', /JSON lines on stdout/],
    ];
    for (const [env, variable, rule] of cases) {
      const err = rejected(env);
      assert.equal(err.variable, variable);
      assert.match(err.rule, rule);
      assert.ok(!err.message.includes('\n'));
    }
    assert.doesNotThrow(() => readOtelConfig({ OTEL_METRICS_EXPORTER: 'prometheus', OTEL_LOGS_EXPORTER: 'none' }));
  });

  it('collects header values and endpoint credentials as secrets', () => {
    const c = readOtelConfig({
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc123,x-team=ha',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://user:p4ssw0rd@collector:4318/v1/traces',
    });
    for (const s of ['Bearer%20abc123', 'Bearer abc123', 'user', 'p4ssw0rd']) assert.ok(c.secrets.includes(s), s);
  });
});

describe('PinoDiagLogger', () => {
  it('writes the SDK diagnostics as JSON lines with component otel, secrets masked', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const diag = new PinoDiagLogger(pino({ level: 'trace' }, sink), ['abc123']);
    diag.warn('Header "authorization" has invalid value (Bearer abc123) and will be ignored');
    diag.error('export failed', new Error('connect ECONNREFUSED 127.0.0.1:4318'));
    diag.verbose('details', { attempt: 2 });
    assert.deepEqual(
      lines.map((l) => [l.level, l.component, l.msg]),
      [
        [40, 'otel', 'Header "authorization" has invalid value (Bearer ***) and will be ignored'],
        [50, 'otel', 'export failed connect ECONNREFUSED 127.0.0.1:4318'],
        [10, 'otel', 'details {"attempt":2}'],
      ],
    );
  });
});
