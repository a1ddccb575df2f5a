import { DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import type { Level, Logger } from 'pino';

/**
 * The OpenTelemetry SDK's own diagnostics (export failures, dropped spans, OTEL_LOG_LEVEL=debug
 * chatter) as pino JSON lines with `"component": "otel"`, instead of the SDK's console logger
 * that would write free text into the JSON log stream on stdout. Secret values (OTLP header
 * values, URL passwords) are masked first: the SDK prints a rejected header value verbatim.
 */
export class PinoDiagLogger implements DiagLogger {
  constructor(
    private readonly log: Logger,
    private readonly secrets: readonly string[],
  ) {}

  error(message: string, ...args: unknown[]): void {
    this.write('error', message, args);
  }
  warn(message: string, ...args: unknown[]): void {
    this.write('warn', message, args);
  }
  info(message: string, ...args: unknown[]): void {
    this.write('info', message, args);
  }
  debug(message: string, ...args: unknown[]): void {
    this.write('debug', message, args);
  }
  verbose(message: string, ...args: unknown[]): void {
    this.write('trace', message, args);
  }

  private write(level: Level, message: string, args: unknown[]): void {
    if (!this.log.isLevelEnabled(level)) return;
    const detail = args.map(describe).filter((s) => s !== '');
    const text = this.mask([String(message), ...detail].join(' '));
    this.log[level]({ component: 'otel' }, text);
  }

  private mask(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }
}

function describe(arg: unknown): string {
  if (arg instanceof Error) return arg.message;
  if (typeof arg === 'string') return arg;
  if (arg === undefined) return '';
  try {
    return JSON.stringify(arg) ?? String(arg);
  } catch {
    return String(arg);
  }
}

/** The pino level a diag level maps to (silent for NONE). */
export function pinoLevelFor(level: DiagLogLevel): Level | 'silent' {
  if (level <= DiagLogLevel.NONE) return 'silent';
  if (level <= DiagLogLevel.ERROR) return 'error';
  if (level <= DiagLogLevel.WARN) return 'warn';
  if (level <= DiagLogLevel.INFO) return 'info';
  if (level <= DiagLogLevel.DEBUG) return 'debug';
  return 'trace';
}
