import { SpanStatusCode, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  LockUnavailableError,
  type AcquireResult,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type ReleaseResult,
  type RenewResult,
} from '../ha/lock';
import type { HaInstruments } from './metrics';
import { Attr, Span as SpanName, type LockOperation } from './names';

/**
 * Wraps a LeaseLock so every lease operation is a span, a failure count and (for renewals) a
 * latency sample, without the elector knowing telemetry exists.
 */
export class InstrumentedLeaseLock implements LeaseLock {
  readonly lockKey: string;

  constructor(
    private readonly inner: LeaseLock,
    private readonly tracer: Tracer,
    private readonly instruments: HaInstruments,
    private readonly instanceId: string,
    private readonly log: Logger,
    private readonly now: () => number,
    /** Attributes every span gets, e.g. the database semantic conventions of the Redis behind the lock. */
    private readonly spanAttributes: Attributes = {},
  ) {
    this.lockKey = inner.lockKey;
  }

  acquire(): Promise<AcquireResult> {
    return this.traced('acquire', undefined, async (span) => {
      const r = await this.inner.acquire();
      span.setAttribute(Attr.result, r.kind);
      if (r.kind === 'acquired') span.setAttribute(Attr.fencingToken, r.lease.token);
      if (r.kind === 'held') {
        span.setAttribute(Attr.holder, r.holder.instanceId);
        span.setAttribute(Attr.fencingToken, r.holder.token);
      }
      if (r.kind === 'anomaly') this.failed(span, 'acquire', r.reason, r.detail);
      return r;
    });
  }

  renew(lease: Lease): Promise<RenewResult> {
    return this.traced('renew', lease.token, async (span) => {
      const started = this.now();
      try {
        const r = await this.inner.renew(lease);
        span.setAttribute(Attr.result, r.kind);
        if (r.kind === 'lost') {
          if (r.holder) span.setAttribute(Attr.holder, r.holder.instanceId);
          this.failed(span, 'renew', 'lost', r.holder ? `lease taken over by ${r.holder.instanceId}` : 'lease expired before the renewal reached Redis');
        }
        if (r.kind === 'anomaly') this.failed(span, 'renew', r.reason, r.detail);
        return r;
      } finally {
        this.instruments.renewLatency((this.now() - started) / 1000);
      }
    });
  }

  release(lease: Lease): Promise<ReleaseResult> {
    return this.traced('release', lease.token, async (span) => {
      const r = await this.inner.release(lease);
      span.setAttribute(Attr.result, r.kind);
      if (r.kind === 'not_held') this.failed(span, 'release', 'lost', 'the lease was no longer ours to release');
      return r;
    });
  }

  abandon(): Promise<ReleaseResult> {
    // Usually there is nothing to abandon: not_held is the expected answer, not a failure.
    return this.traced('release', undefined, async (span) => {
      const r = await this.inner.abandon();
      span.setAttribute(Attr.result, r.kind === 'released' ? 'abandoned' : 'nothing_to_abandon');
      return r;
    });
  }

  isConnected(): boolean {
    return this.inner.isConnected();
  }

  subscribe(listener: (event: LockEvent) => void): void {
    this.inner.subscribe(listener);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private failed(span: Span, operation: LockOperation, reason: LockUnavailableError['reason'] | 'lost' | 'wrong_type' | 'invalid_value', detail: string): void {
    this.instruments.lockFailure(operation, reason);
    span.setAttribute(Attr.failureReason, reason);
    span.setStatus({ code: SpanStatusCode.ERROR, message: detail });
    this.log.warn({ operation, reason, detail, lock_key: this.lockKey }, `lock ${operation} failed: ${reason}`);
  }

  private traced<T>(operation: LockOperation, token: number | undefined, run: (span: Span) => Promise<T>): Promise<T> {
    const name = operation === 'acquire' ? SpanName.acquire : operation === 'renew' ? SpanName.renew : SpanName.release;
    return this.tracer.startActiveSpan(
      name,
      { attributes: { ...this.spanAttributes, [Attr.instanceId]: this.instanceId, [Attr.lockKey]: this.lockKey, ...(token === undefined ? {} : { [Attr.fencingToken]: token }) } },
      async (span) => {
        try {
          return await run(span);
        } catch (err) {
          const reason = err instanceof LockUnavailableError ? err.reason : 'script_error';
          span.setAttribute(Attr.result, 'error');
          this.failed(span, operation, reason, err instanceof Error ? err.message : String(err));
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }
}
