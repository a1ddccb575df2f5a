import { SpanStatusCode, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  LockUnavailableError,
  type AcquireRequest,
  type AcquireResult,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type ReleaseResult,
  type RenewResult,
  type StoreFacts,
} from '../ha/lock';
import type { HaInstruments } from './metrics';
import { Attr, Span as SpanName, type LockFailureReason, type LockOperation } from './names';
import { errMessage } from '../error-text';

/**
 * Wraps a LeaseLock so every lease operation is a span, a failure count and (for renewals) a
 * latency sample, without the elector knowing telemetry exists. It also judges whether Redis is
 * reachable from what the operations got back (see isConnected).
 */
export class InstrumentedLeaseLock implements LeaseLock {
  readonly lockKey: string;
  /** When the last lease operation ended, and whether Redis answered it. */
  private lastOutcome: { at: number; answered: boolean } | null = null;

  /**
   * @param answerWithinMs how old the last answer from Redis may be for Redis to count as
   *   reachable: the elector calls at least once per renew interval, and a call takes at most one
   *   command timeout, so a longer silence means calls are not getting through.
   */
  constructor(
    private readonly inner: LeaseLock,
    private readonly tracer: Tracer,
    private readonly instruments: HaInstruments,
    private readonly instanceId: string,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly answerWithinMs: number,
    /** Attributes every span gets, e.g. the database semantic conventions of the Redis behind the lock. */
    private readonly spanAttributes: Attributes = {},
  ) {
    this.lockKey = inner.lockKey;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return this.traced('acquire', undefined, async (span) => {
      const r = await this.inner.acquire(request);
      span.setAttribute(Attr.result, r.kind === 'observed' ? r.record.state : r.kind);
      if (r.kind === 'acquired') span.setAttribute(Attr.fencingToken, r.lease.token);
      if (r.kind === 'observed') {
        if (r.record.state === 'held') span.setAttribute(Attr.holder, r.record.instanceId);
        span.setAttribute(Attr.fencingToken, r.record.token);
      }
      if (r.kind === 'barrier') span.setAttribute(Attr.barrierReason, r.reason);
      if (r.kind === 'foreign') this.failed(span, 'acquire', 'invalid_value', r.detail);
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
          this.failed(span, 'renew', 'lost', r.holder ? `lease taken over by ${r.holder.instanceId}` : `the lease record is ${r.found}, not our lease`);
        }
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

  handOver(lease: Lease, successor: string): Promise<ReleaseResult> {
    // A release to one named successor: the same operation in metrics and spans.
    return this.traced('release', lease.token, async (span) => {
      span.setAttribute(Attr.holder, successor);
      const r = await this.inner.handOver(lease, successor);
      span.setAttribute(Attr.result, r.kind === 'released' ? 'handed_over' : r.kind);
      if (r.kind === 'not_held') this.failed(span, 'release', 'lost', 'the lease was no longer ours to hand over');
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

  /**
   * Whether lease operations reach Redis: the socket is open, the last operation got an answer
   * (any answer; a timeout or a dead connection is none) and that answer is recent. A socket can
   * stay "ready" for a long time while nothing gets through (a black-holed link); the operations'
   * outcomes show it within answerWithinMs.
   */
  isConnected(): boolean {
    if (!this.inner.isConnected()) return false;
    const last = this.lastOutcome;
    if (last === null) return true; // nothing tried yet: the socket is all there is to go by
    return last.answered && this.now() - last.at <= this.answerWithinMs;
  }

  facts(): StoreFacts {
    return this.inner.facts();
  }

  subscribe(listener: (event: LockEvent) => void): void {
    this.inner.subscribe(listener);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** The one place a lock failure is counted and logged (with the error and its stack, when there is one). */
  private failed(span: Span, operation: LockOperation, reason: LockFailureReason, detail: string, err?: unknown): void {
    this.instruments.lockFailure(operation, reason);
    span.setAttribute(Attr.failureReason, reason);
    span.setStatus({ code: SpanStatusCode.ERROR, message: detail });
    this.log.warn({ operation, reason, detail, lock_key: this.lockKey, ...(err === undefined ? {} : { err }) }, `lock ${operation} failed: ${reason}`);
  }

  private traced<T>(operation: LockOperation, token: number | undefined, run: (span: Span) => Promise<T>): Promise<T> {
    const name = operation === 'acquire' ? SpanName.acquire : operation === 'renew' ? SpanName.renew : SpanName.release;
    return this.tracer.startActiveSpan(
      name,
      {
        attributes: {
          ...this.spanAttributes,
          [Attr.instanceId]: this.instanceId,
          [Attr.lockKey]: this.lockKey,
          ...(token === undefined ? {} : { [Attr.fencingToken]: token }),
        },
      },
      async (span) => {
        try {
          const r = await run(span);
          this.lastOutcome = { at: this.now(), answered: true };
          return r;
        } catch (err) {
          const reason = err instanceof LockUnavailableError ? err.reason : 'script_error';
          // An error reply (a rejected script) is still an answer from Redis.
          this.lastOutcome = { at: this.now(), answered: reason !== 'timeout' && reason !== 'connection' };
          span.setAttribute(Attr.result, 'error');
          this.failed(span, operation, reason, errMessage(err), err);
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }
}
