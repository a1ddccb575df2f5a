import type { LockFailureReason, LockOperation } from '../telemetry/names';

/**
 * The elector's view of the lease store: three operations and two signals. The elector knows
 * nothing about Redis; RedisLeaseLock implements this against Redis, unit tests with a fake.
 */
export interface LeaseLock {
  readonly lockKey: string;
  acquire(): Promise<AcquireResult>;
  renew(lease: Lease): Promise<RenewResult>;
  release(lease: Lease): Promise<ReleaseResult>;
  /**
   * Deletes any lease this process holds without knowing it: an acquire whose reply timed out may
   * still have run in the store. Call only while holding no lease.
   */
  abandon(): Promise<ReleaseResult>;
  /** Whether the store is reachable right now, as far as the client knows. */
  isConnected(): boolean;
  /** `connected` after the connection (re)opens; `released` when some holder gave the lease up. */
  subscribe(listener: (event: LockEvent) => void): void;
  close(): Promise<void>;
}

export type LockEvent = 'connected' | 'released';

/** A leadership this replica holds. */
export interface Lease {
  /** Fencing token: strictly greater than the token of every earlier leadership. */
  readonly token: number;
  /** The exact value stored at the lock key; renew and release compare against it. */
  readonly value: string;
}

/** Who holds the lease when it is not us, as far as the lock key says. */
export interface Holder {
  instanceId: string;
  token: number;
}

/** Why the lock key cannot be read as a lease. Treated as "held by someone else". */
export type AnomalyReason = Extract<LockFailureReason, 'wrong_type' | 'invalid_value'>;

export type AcquireResult =
  | { kind: 'acquired'; lease: Lease }
  | { kind: 'held'; holder: Holder; remainingMs: number }
  | { kind: 'barrier'; remainingMs: number }
  | { kind: 'anomaly'; reason: AnomalyReason; detail: string; remainingMs: number };

export type RenewResult =
  | { kind: 'renewed' }
  | { kind: 'lost'; holder: Holder | null; remainingMs: number }
  | { kind: 'anomaly'; reason: AnomalyReason; detail: string; remainingMs: number };

export type ReleaseResult = { kind: 'released' } | { kind: 'not_held' };

/** A lease operation that got no answer: the lease may or may not have changed. */
export class LockUnavailableError extends Error {
  constructor(
    readonly operation: LockOperation,
    readonly reason: Extract<LockFailureReason, 'timeout' | 'connection' | 'script_error'>,
    message: string,
  ) {
    super(message);
    this.name = 'LockUnavailableError';
  }
}

/** Parses "<token>|<session>|<instance id>"; null when the value is not a lease. */
export function parseLeaseValue(value: string): { token: number; session: string; instanceId: string } | null {
  const m = /^(\d+)\|([0-9a-f]+)\|(.+)$/.exec(value);
  if (!m) return null;
  return { token: Number(m[1]), session: m[2] as string, instanceId: m[3] as string };
}
