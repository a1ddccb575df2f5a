import { DiagLogLevel } from '@opentelemetry/api';
import { ConfigError } from '../config';

/**
 * The standard OTEL_* variables GRINDER acts on, read and validated at start-up like every other
 * setting. The semantics follow @opentelemetry/sdk-node's create-from-env (the SDK this replaces,
 * see sdk.ts) with two deliberate differences:
 * - a value the SDK would warn about and replace by its default (an unknown exporter, protocol,
 *   sampler or log level) stops start-up with exit code 2 instead, so a typo cannot silently
 *   change where spans go;
 * - with OTEL_TRACES_EXPORTER unset, spans are exported over OTLP only when an OTLP endpoint is
 *   set (the SDK would send them to http://localhost:4318): a replica without tracing set up sends
 *   nothing anywhere. OTEL_TRACES_EXPORTER=otlp without an endpoint does use the SDK default.
 * OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are applied by the SDK's own resource detectors;
 * OTEL_EXPORTER_OTLP_{,TRACES_}{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,...} by the OTLP exporters.
 */
export interface OtelConfig {
  /** OTEL_SDK_DISABLED=true: no tracer provider at all (metrics on /metrics stay on). */
  sdkDisabled: boolean;
  /** Where finished spans go; empty when they are not exported. */
  traceExporters: TraceExporterName[];
  otlpProtocol: OtlpProtocol;
  /** OTEL_LOG_LEVEL; null when unset (then the SDK's warnings and errors follow GRINDER_LOG_LEVEL). */
  diagLogLevel: DiagLogLevel | null;
  sampler: SamplerConfig | null;
  spanLimits: SpanLimitsConfig;
  batch: BatchConfig;
  /** Values that must never be printed: OTLP header values and endpoint passwords. */
  secrets: string[];
}

export const TRACE_EXPORTERS = ['otlp', 'console'] as const;
export type TraceExporterName = (typeof TRACE_EXPORTERS)[number];
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export interface SamplerConfig {
  name: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers; 1 when unset, like the SDK. */
  ratio: number;
}

export interface SpanLimitsConfig {
  attributeCountLimit?: number;
  attributeValueLengthLimit?: number;
  eventCountLimit?: number;
  linkCountLimit?: number;
  attributePerEventCountLimit?: number;
  attributePerLinkCountLimit?: number;
}

export interface BatchConfig {
  maxQueueSize?: number;
  scheduledDelayMillis?: number;
  exportTimeoutMillis?: number;
  maxExportBatchSize?: number;
}

type Env = Record<string, string | undefined>;

const DIAG_LEVELS: Record<string, DiagLogLevel> = {
  NONE: DiagLogLevel.NONE,
  ERROR: DiagLogLevel.ERROR,
  WARN: DiagLogLevel.WARN,
  INFO: DiagLogLevel.INFO,
  DEBUG: DiagLogLevel.DEBUG,
  VERBOSE: DiagLogLevel.VERBOSE,
  ALL: DiagLogLevel.ALL,
};

/** Like @opentelemetry/core's getStringFromEnv: trimmed, and blank counts as unset. */
function str(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

function list(env: Env, name: string): string[] {
  return (str(env, name) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** A number read from `name` that passes `ok`, or undefined when unset; anything else stops start-up. */
function numberAt(env: Env, name: string, ok: (n: number) => boolean, rule: string): number | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!ok(n)) throw new ConfigError(name, raw, rule);
  return n;
}

function nonNegative(env: Env, name: string): number | undefined {
  return numberAt(env, name, (n) => Number.isFinite(n) && n >= 0, 'must be a number ≥ 0');
}

/**
 * The batch processor's sizes, where 0 breaks tracing without a word from the SDK: with a batch
 * size of 0 it sends empty batches in a busy loop and never a span, with a queue size of 0 it
 * drops every span.
 */
function positiveCount(env: Env, name: string): number | undefined {
  return numberAt(env, name, (n) => Number.isInteger(n) && n >= 1, 'must be a whole number ≥ 1');
}

function firstNonNegative(env: Env, ...names: string[]): number | undefined {
  for (const name of names) {
    const n = nonNegative(env, name);
    if (n !== undefined) return n;
  }
  return undefined;
}

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[], hint = ''): T {
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw new ConfigError(name, raw, `must be one of ${allowed.join(', ')}${hint}`);
}

function sdkDisabled(env: Env): boolean {
  const raw = str(env, 'OTEL_SDK_DISABLED');
  if (raw === undefined) return false;
  const v = raw.toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new ConfigError('OTEL_SDK_DISABLED', raw, 'must be true or false');
}

function traceExporters(env: Env): TraceExporterName[] {
  const names = [...new Set(list(env, 'OTEL_TRACES_EXPORTER'))];
  for (const n of names) {
    if (n !== 'none') {
      oneOf('OTEL_TRACES_EXPORTER', n, TRACE_EXPORTERS, ' or none (a comma-separated list; zipkin and jaeger are not supported)');
    }
  }
  if (names.includes('none')) return [];
  if (names.length > 0) return names as TraceExporterName[];
  const endpoint = str(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? str(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  return endpoint === undefined ? [] : ['otlp'];
}

function otherSignal(env: Env, name: string, why: string, accepted: readonly string[]): void {
  for (const n of list(env, name)) {
    if (!accepted.includes(n)) throw new ConfigError(name, n, `${why}; leave it unset or set it to ${accepted.join(' or ')}`);
  }
}

function sampler(env: Env): SamplerConfig | null {
  const raw = str(env, 'OTEL_TRACES_SAMPLER');
  if (raw === undefined) return null;
  const name = oneOf('OTEL_TRACES_SAMPLER', raw, SAMPLERS);
  const argRaw = str(env, 'OTEL_TRACES_SAMPLER_ARG');
  let ratio = 1;
  if (argRaw !== undefined && name.endsWith('traceidratio')) {
    ratio = Number(argRaw);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', argRaw, 'must be a sampling ratio from 0 to 1');
    }
  }
  return { name, ratio };
}

/** Header values (OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer x,...) and URL passwords. */
function secrets(env: Env): string[] {
  const out: string[] = [];
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS']) {
    for (const pair of list(env, name)) {
      const eq = pair.indexOf('=');
      const value = eq >= 0 ? pair.slice(eq + 1).trim() : '';
      if (value !== '') out.push(value, safeDecode(value));
    }
  }
  for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    const raw = str(env, name);
    if (raw === undefined) continue;
    try {
      const u = new URL(raw);
      for (const part of [u.username, u.password]) if (part !== '') out.push(part, safeDecode(part));
    } catch {
      // Not a URL: the exporter reports that itself; there is no user info to hide.
    }
  }
  return [...new Set(out)].filter((s) => s.length >= 3);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function readOtelConfig(env: Env): OtelConfig {
  const logLevelRaw = str(env, 'OTEL_LOG_LEVEL');
  let diagLogLevel: DiagLogLevel | null = null;
  if (logLevelRaw !== undefined) {
    diagLogLevel = DIAG_LEVELS[logLevelRaw.toUpperCase()] ?? null;
    if (diagLogLevel === null) {
      throw new ConfigError('OTEL_LOG_LEVEL', logLevelRaw, `must be one of ${Object.keys(DIAG_LEVELS).join(', ')} (any case)`);
    }
  }
  const protocolName = str(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const otlpProtocol = oneOf(protocolName, str(env, protocolName) ?? 'http/protobuf', OTLP_PROTOCOLS);

  otherSignal(env, 'OTEL_METRICS_EXPORTER', `metrics are served for Prometheus on /metrics (GRINDER_METRICS_PORT), not pushed`, ['none', 'prometheus']);
  otherSignal(env, 'OTEL_LOGS_EXPORTER', 'logs are JSON lines on stdout, not exported over OTLP', ['none']);

  const disabled = sdkDisabled(env);
  const exporters = traceExporters(env);
  return {
    sdkDisabled: disabled,
    traceExporters: disabled ? [] : exporters,
    otlpProtocol,
    diagLogLevel,
    sampler: sampler(env),
    spanLimits: {
      attributeCountLimit: firstNonNegative(env, 'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT', 'OTEL_ATTRIBUTE_COUNT_LIMIT'),
      attributeValueLengthLimit: firstNonNegative(env, 'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT', 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT'),
      eventCountLimit: nonNegative(env, 'OTEL_SPAN_EVENT_COUNT_LIMIT'),
      linkCountLimit: nonNegative(env, 'OTEL_SPAN_LINK_COUNT_LIMIT'),
      attributePerEventCountLimit: firstNonNegative(env, 'OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT', 'OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT'),
      attributePerLinkCountLimit: firstNonNegative(env, 'OTEL_LINK_ATTRIBUTE_COUNT_LIMIT', 'OTEL_SPAN_ATTRIBUTE_PER_LINK_COUNT_LIMIT'),
    },
    batch: {
      maxQueueSize: positiveCount(env, 'OTEL_BSP_MAX_QUEUE_SIZE'),
      scheduledDelayMillis: nonNegative(env, 'OTEL_BSP_SCHEDULE_DELAY'),
      exportTimeoutMillis: nonNegative(env, 'OTEL_BSP_EXPORT_TIMEOUT'),
      maxExportBatchSize: positiveCount(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
    },
    secrets: secrets(env),
  };
}
