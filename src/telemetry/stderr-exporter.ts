import { ExportResultCode, hrTimeToMicroseconds, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';

/**
 * OTEL_TRACES_EXPORTER=console: the fields of the SDK's ConsoleSpanExporter, but as one JSON line
 * per span on stderr. The SDK's exporter console.dir()s multi-line objects to stdout, which
 * would break the JSON log stream there.
 */
export class StderrSpanExporter implements SpanExporter {
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const span of spans) {
      const ctx = span.spanContext();
      const line = {
        resource: { attributes: span.resource.attributes },
        instrumentationScope: span.instrumentationScope,
        traceId: ctx.traceId,
        parentSpanContext: span.parentSpanContext,
        traceState: ctx.traceState?.serialize(),
        name: span.name,
        id: ctx.spanId,
        kind: span.kind,
        timestamp: hrTimeToMicroseconds(span.startTime),
        duration: hrTimeToMicroseconds(span.duration),
        attributes: span.attributes,
        status: span.status,
        events: span.events,
        links: span.links,
      };
      process.stderr.write(`${JSON.stringify(line)}\n`);
    }
    done({ code: ExportResultCode.SUCCESS });
  }

  async shutdown(): Promise<void> {}

  async forceFlush(): Promise<void> {}
}
