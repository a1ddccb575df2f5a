import { context, diag, metrics, trace, DiagLogLevel, type Meter, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import {
  defaultResource,
  detectResources,
  resourceAttributesEnvDetector,
  resourceFromAttributes,
  serviceNameEnvDetector,
  type Resource,
} from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type * as OtlpGrpc from '@opentelemetry/exporter-trace-otlp-grpc';
import type * as OtlpJson from '@opentelemetry/exporter-trace-otlp-http';
import type * as OtlpProto from '@opentelemetry/exporter-trace-otlp-proto';
import type { Logger } from 'pino';
import { PinoDiagLogger, pinoLevelFor } from './diag';
import { startRuntimeMetrics } from './metrics';
import { CLUSTER_RESOURCE_ATTRIBUTE, METER_NAME, TRACER_NAME } from './names';
import { readOtelConfig, type OtelConfig, type OtlpProtocol, type SamplerConfig } from './otel-config';
import { StderrSpanExporter } from './stderr-exporter';

export interface Telemetry {
  meter: Meter;
  tracer: Tracer;
  /** True when finished spans leave the process (OTLP or console). */
  tracesExported: boolean;
  /** Prometheus text exposition of every metric, collected now. */
  metricsText(): Promise<string>;
  /** Flushes spans (for at most `budgetMs`; an unreachable collector must not delay a stop) and stops collection. */
  shutdown(budgetMs?: number): Promise<void>;
}

type Env = Record<string, string | undefined>;

export interface TelemetryOptions {
  instanceId: string;
  /** GRINDER_CLUSTER: a resource attribute the Prometheus serializer turns into a label on every series. */
  cluster: string;
  version: string;
  env: Env;
  /** Already validated OTEL_* settings; read from `env` when absent. */
  otel?: OtelConfig;
  /** Where the SDK's own diagnostics go; silent when absent. */
  log?: Logger;
}

/** How long a stop waits for the last spans to reach the collector. */
export const SPAN_FLUSH_BUDGET_MS = 500;

export function otlpTracesConfigured(env: Env): boolean {
  return readOtelConfig(env).traceExporters.includes('otlp');
}

/**
 * Metrics come from our own MeterProvider with a pull-only Prometheus reader served on /metrics:
 * they are the product, so they work whatever OTEL_* says (even OTEL_SDK_DISABLED).
 *
 * Traces are set up from the pieces @opentelemetry/sdk-node would assemble, following its
 * create-from-env rules (see otel-config.ts), rather than through NodeSDK itself: NodeSDK loads
 * every exporter it might need when it is imported (gRPC, protobuf, Zipkin, the logs and metrics
 * OTLP exporters), about 13 MiB of resident memory in a process that uses one of them at most.
 * Here the one OTLP exporter the protocol asks for is loaded, and only when spans are exported.
 * Without an exporter spans are still created, so their ids land in the logs.
 */
export function startTelemetry(opts: TelemetryOptions): Telemetry {
  const otel = opts.otel ?? readOtelConfig(opts.env);
  if (opts.log) {
    const level = otel.diagLogLevel ?? DiagLogLevel.WARN;
    // Unset OTEL_LOG_LEVEL: the SDK's warnings and errors, as far as GRINDER_LOG_LEVEL lets them through.
    const otelLog = otel.diagLogLevel === null ? opts.log : opts.log.child({}, { level: pinoLevelFor(level) });
    diag.setLogger(new PinoDiagLogger(otelLog, otel.secrets), { logLevel: level, suppressOverrideMessage: true });
  }

  const resource = serviceResource(opts.instanceId, opts.version, opts.cluster);
  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, withoutTargetInfo: true });
  // The cluster is a resource attribute promoted to a label, so every series carries it (runtime
  // metrics too) without each instrument repeating it; the serializer appends it last, after the
  // series' own labels, which keeps lines like grinder_ha_role{role="active",… greppable.
  const clusterOnly = new RegExp(`^${CLUSTER_RESOURCE_ATTRIBUTE.replace(/\./g, '\\.')}$`);
  const serializer = new PrometheusSerializer(undefined, false, clusterOnly, true, true);
  const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  const runtime = startRuntimeMetrics(meterProvider);

  let tracerProvider: TracerProvider | null = null;
  if (!otel.sdkDisabled) {
    tracerProvider = new TracerProvider({
      resource,
      spanProcessors: otel.traceExporters.map((name) =>
        name === 'console' ? new SimpleSpanProcessor({ exporter: new StderrSpanExporter() }) : batchProcessor(otel),
      ),
      ...(otel.sampler ? { sampler: sampler(otel.sampler) } : {}),
      spanLimits: definedOnly(otel.spanLimits),
    });
    // Spans started inside startActiveSpan must be found again by the log mixin and by the Redis
    // command spans, across awaits.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(tracerProvider);
  }

  return {
    meter: meterProvider.getMeter(METER_NAME, opts.version),
    tracer: tracerProvider ? tracerProvider.getTracer(TRACER_NAME, opts.version) : trace.getTracer(TRACER_NAME, opts.version),
    tracesExported: otel.traceExporters.length > 0,
    async metricsText() {
      const { resourceMetrics } = await prometheus.collect();
      return serializer.serialize(resourceMetrics);
    },
    async shutdown(budgetMs = SPAN_FLUSH_BUDGET_MS) {
      runtime.stop();
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, budgetMs);
      });
      await Promise.race([Promise.allSettled([tracerProvider?.shutdown(), meterProvider.shutdown()]), budget]);
      clearTimeout(timer);
      metrics.disable();
      trace.disable();
      context.disable();
      diag.disable();
    },
  };
}

/**
 * service.name is OTEL_SERVICE_NAME, else service.name from OTEL_RESOURCE_ATTRIBUTES, else
 * "grinder". service.version and service.instance.id are always GRINDER's own (its version and
 * GRINDER_INSTANCE_ID), so that spans, logs and metrics name the same replica.
 */
function serviceResource(instanceId: string, version: string, cluster: string): Resource {
  const fromEnv = detectResources({ detectors: [resourceAttributesEnvDetector, serviceNameEnvDetector] });
  return defaultResource()
    .merge(resourceFromAttributes({ 'service.name': 'grinder' }))
    .merge(fromEnv)
    .merge(resourceFromAttributes({ 'service.version': version, 'service.instance.id': instanceId, [CLUSTER_RESOURCE_ATTRIBUTE]: cluster }));
}

function batchProcessor(otel: OtelConfig): SpanProcessor {
  return new BatchSpanProcessor({ exporter: otlpExporter(otel.otlpProtocol), ...definedOnly(otel.batch) });
}

/*
 * Loaded on demand, with require() rather than import(): import() would load the packages' ESM
 * builds, a second copy of @opentelemetry/core and friends beside the CommonJS one.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
function otlpExporter(protocol: OtlpProtocol): SpanExporter {
  switch (protocol) {
    case 'http/protobuf': {
      const m = require('@opentelemetry/exporter-trace-otlp-proto') as typeof OtlpProto;
      return new m.OTLPTraceExporter();
    }
    case 'http/json': {
      const m = require('@opentelemetry/exporter-trace-otlp-http') as typeof OtlpJson;
      return new m.OTLPTraceExporter();
    }
    case 'grpc': {
      const m = require('@opentelemetry/exporter-trace-otlp-grpc') as typeof OtlpGrpc;
      return new m.OTLPTraceExporter();
    }
  }
}
/* eslint-enable @typescript-eslint/no-require-imports */

function sampler(s: SamplerConfig): Sampler {
  switch (s.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(s.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(s.ratio) });
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
