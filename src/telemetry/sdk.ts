import { metrics, trace, type Meter, type Tracer } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, NoopSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { startRuntimeMetrics } from './metrics';
import { CLUSTER_RESOURCE_ATTRIBUTE, METER_NAME, TRACER_NAME } from './names';

export interface Telemetry {
  meter: Meter;
  tracer: Tracer;
  /** Spans leave the process only when an OTLP endpoint is configured. */
  tracesExported: boolean;
  /** Prometheus text exposition of every metric, collected now. */
  metricsText(): Promise<string>;
  /** Flushes spans and stops collection. */
  shutdown(): Promise<void>;
}

type Env = Record<string, string | undefined>;

export function otlpTracesConfigured(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

/**
 * Metrics come from our own MeterProvider with a pull-only Prometheus reader served on /metrics:
 * they are the product, so they work whatever OTEL_* says (even OTEL_SDK_DISABLED). Traces go
 * through the NodeSDK, which honours the standard OTEL_* variables; without an OTLP endpoint spans
 * are still created (their ids land in the logs) but exported nowhere.
 */
export function startTelemetry(opts: { instanceId: string; cluster: string; version: string; env: Env }): Telemetry {
  const resource = resourceFromAttributes({
    'service.name': 'grinder',
    'service.version': opts.version,
    'service.instance.id': opts.instanceId,
    [CLUSTER_RESOURCE_ATTRIBUTE]: opts.cluster,
  });

  const prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, withoutTargetInfo: true });
  // The cluster is a resource attribute promoted to a label, so every series carries it (runtime
  // metrics too) without each instrument repeating it; the serializer appends it last, after the
  // series' own labels, which keeps lines like grinder_ha_role{role="active",… greppable.
  const clusterOnly = new RegExp(`^${CLUSTER_RESOURCE_ATTRIBUTE.replace(/\./g, '\\.')}$`);
  const serializer = new PrometheusSerializer(undefined, false, clusterOnly, true, true);
  const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  const runtime = startRuntimeMetrics(meterProvider);

  const tracesExported = otlpTracesConfigured(opts.env);
  const spanProcessors: SpanProcessor[] = tracesExported
    ? [new BatchSpanProcessor(new OTLPTraceExporter())]
    : [new NoopSpanProcessor()];
  const sdk = new NodeSDK({
    resource,
    serviceName: opts.env.OTEL_SERVICE_NAME?.trim() || 'grinder',
    autoDetectResources: false,
    metricReaders: [],
    logRecordProcessors: [],
    spanProcessors,
    instrumentations: [],
  });
  sdk.start();

  return {
    meter: meterProvider.getMeter(METER_NAME, opts.version),
    tracer: trace.getTracer(TRACER_NAME, opts.version),
    tracesExported,
    async metricsText() {
      const { resourceMetrics } = await prometheus.collect();
      return serializer.serialize(resourceMetrics);
    },
    async shutdown() {
      runtime.stop();
      await Promise.allSettled([sdk.shutdown(), meterProvider.shutdown()]);
      metrics.disable();
      trace.disable();
    },
  };
}
