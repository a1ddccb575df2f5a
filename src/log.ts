import { isSpanContextValid, trace } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

/**
 * JSON lines on stdout. Inside a span, every line carries its trace and span ids, so a log line
 * leads to the trace of the lease operation it belongs to.
 *
 * Written through process.stdout rather than pino's default SonicBoom destination: SonicBoom
 * flushes synchronously when the process exits and retries a failing write forever, so with
 * stdout's reader gone (EPIPE) every stop hung. process.stdout reports EPIPE as an event
 * (process-guards.ts drops it) and has nothing left to flush at exit.
 */
export function createLogger(level: LogLevel, instanceId: string): Logger {
  return pino(
    {
      level,
      base: { service: 'grinder', instance_id: instanceId },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Defence in depth: nothing we log carries credentials, and these paths make sure of it.
      redact: { paths: ['password', '*.password', 'redisUrl', '*.redisUrl'], censor: '***' },
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const ctx = span.spanContext();
        return isSpanContextValid(ctx) ? { trace_id: ctx.traceId, span_id: ctx.spanId } : {};
      },
    },
    process.stdout,
  );
}
