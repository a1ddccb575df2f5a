/**
 * The elector's view of the lease store. The elector knows nothing about Redis; RedisLeaseLock
 * implements this against Redis, unit tests with a fake (test/support/fake-lock.ts), and the
 * conformance suite (test/integration/lock-conformance.test.ts) runs the same cases against both.
 *
 * The store keeps one lease record that never expires. Every change writes a new random version;
 * the elector decides when a version may be taken over (SAFETY in election.ts), the store only
 * checks that the version is still current.
 */
export interface LeaseLock {
  readonly lockKey: string;
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  renew(lease: Lease): Promise<RenewResult>;
  release(lease: Lease): Promise<ReleaseResult>;
  /**
   * Gives the lease to one named successor (a planned switchover): the record names it, it may
   * take over at once, everyone else waits the lease out. Call only after leading has stopped.
   */
  handOver(lease: Lease, successor: string): Promise<ReleaseResult>;
  /**
   * Frees any leadership this process holds without knowing it: an acquire or renew whose reply
   * timed out may still have run in the store. Call only while holding no lease.
   */
  abandon(): Promise<ReleaseResult>;
  /** Whether the store is reachable right now, as far as the client knows. */
  isConnected(): boolean;
  /** What the store said about itself at the last connect. */
  facts(): StoreFacts;
  subscribe(listener: (event: LockEvent) => void): void;
  close(): Promise<void>;
}

/** Lease operations, as they appear in the `operation` label and span names. */
export type LockOperation = 'acquire' | 'renew' | 'release';

/**
 * Why a lease operation failed. A small fixed set so the `reason` label stays low-cardinality:
 * - timeout: the store did not answer within the command timeout;
 * - connection: no usable connection to the store;
 * - lost: the lease was no longer ours when we tried to renew or release it;
 * - wrong_type: the lock key holds a non-string Redis type;
 * - invalid_value: the lock key holds a string that is not a GRINDER lease record;
 * - script_error: the store rejected the script (anything else it replied with an error);
 * - failover: the node answered READONLY, LOADING or MASTERDOWN (not, or no longer, the master);
 *   the client finds the master again at once;
 * - replication: the write ran but too few replicas acknowledged it in time (WAIT), so it does
 *   not count: a failover could promote a replica without it.
 */
export const LOCK_FAILURE_REASONS = ['timeout', 'connection', 'lost', 'wrong_type', 'invalid_value', 'script_error', 'failover', 'replication'] as const;
export type LockFailureReason = (typeof LOCK_FAILURE_REASONS)[number];

export interface StoreFacts {
  /** Redis' maxmemory-policy; null until read or when CONFIG is not allowed. */
  maxmemoryPolicy: string | null;
  /**
   * True when every acknowledged write survives a restart (appendonly yes, appendfsync always, and
   * no failover to an asynchronously replicated copy: standalone only); false when it may not;
   * null when unknown (CONFIG not allowed), which counts as false.
   */
  durable: boolean | null;
  mode: 'standalone' | 'sentinel' | 'cluster';
  /** "host:port" of the master the lease commands go to; null while unknown. */
  master: string | null;
  /** Times the master changed (a Sentinel or Cluster failover) since start. */
  masterChanges: number;
  /** Whether the last lease write was acknowledged by the replicas required; null when none are required. */
  replicasAcked: boolean | null;
}

export interface AcquireRequest {
  /** The record version this replica may take over now, or null to only look. */
  expectedVer: string | null;
  /** The highest fencing token this replica has seen anywhere. */
  floor: number;
  /** How long a barrier this call writes must last: the longest TTL this replica knows a holder used. */
  barrierMs: number;
  /**
   * This replica has seen no record and no break in its connection since it started, so on a
   * cluster declared brand-new (`grinder init`) it may lead at once instead of writing a barrier.
   * Absent: false.
   */
  fresh?: boolean;
}

/** handoff: released by its holder to the successor named in `instanceId` (a planned switchover). */
export type RecordState = 'held' | 'free' | 'barrier' | 'handoff';

/** The lease record as one read found it. */
export interface RecordView {
  state: RecordState;
  ver: string;
  token: number;
  ttlMs: number;
  maxTtlMs: number;
  instanceId: string;
  /** Whether the record names this process incarnation. */
  ours: boolean;
}

/** A leadership this replica holds. */
export interface Lease {
  /** Fencing token: strictly greater than the token of every earlier leadership. */
  readonly token: number;
  /** The record version our last acquire or renew wrote. */
  readonly ver: string;
}

/** Who holds the lease when it is not us, as far as the record says. */
export interface Holder {
  instanceId: string;
  token: number;
}

/** Why a barrier was written: nobody may lead until it has stood for its length. */
export type BarrierReason = 'data_loss' | 'record_missing' | 'rollback';

export type AcquireResult =
  | { kind: 'acquired'; lease: Lease }
  /** Not taken: the record as it stands, and the newest token the store knows. */
  | { kind: 'observed'; record: RecordView; newest: number }
  | { kind: 'barrier'; ver: string; ms: number; reason: BarrierReason; newest: number }
  /** A string that is not a record: taken over, like any version, once it stood still long enough. */
  | { kind: 'foreign'; ver: string; detail: string; newest: number }
  /** Something the elector must never overwrite or cannot use: it waits and says why. */
  | { kind: 'anomaly'; reason: Extract<LockFailureReason, 'wrong_type' | 'invalid_value'>; detail: string };

export type RenewResult = { kind: 'renewed'; lease: Lease } | { kind: 'lost'; found: string; holder: Holder | null };

export type ReleaseResult = { kind: 'released'; ver: string } | { kind: 'not_held' };

export type AnnouncedEvent = 'acquired' | 'renewed' | 'released' | 'barrier' | 'handoff';

export interface Announcement {
  event: AnnouncedEvent;
  ver: string;
  token: number;
  ttlMs: number;
  /** The holder; for handoff, the successor. */
  instanceId: string;
}

/** An operator's `grinder switchover`, published on the announcement channel for the leader. */
export interface SwitchoverRequest {
  /** Random hex naming this request, for the logs. */
  id: string;
  /** The instance that leads now: only it acts on the request. */
  from: string;
  /** The fencing token of that leadership: a later leadership of the same instance ignores the request. */
  token: number;
  /** The standby to hand the lease to. */
  to: string;
}

/**
 * `connected` after a connection (re)opens, `disconnected` when one closes (announcements may have
 * been missed, and a restarted Redis may have lost writes), `announcement` for every record change
 * the store publishes.
 */
export type LockEvent =
  { kind: 'connected' } | { kind: 'disconnected' } | { kind: 'announcement'; announcement: Announcement } | { kind: 'switchover'; request: SwitchoverRequest };

/** A lease operation that got no answer: the lease may or may not have changed. */
export class LockUnavailableError extends Error {
  constructor(
    readonly operation: LockOperation,
    readonly reason: Extract<LockFailureReason, 'timeout' | 'connection' | 'script_error' | 'failover' | 'replication'>,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LockUnavailableError';
  }
}

/** Parses an announcement ("<event>|<ver>|<token>|<ttl>|<instance>"); null for anything else. */
export function parseAnnouncement(message: string): Announcement | null {
  const m = /^(acquired|renewed|released|barrier|handoff)\|([0-9a-f]+)\|(\d{1,16})\|(\d{1,16})\|(.*)$/.exec(message);
  if (!m) return null;
  const token = Number(m[3]);
  const ttlMs = Number(m[4]);
  if (!Number.isSafeInteger(token) || !Number.isSafeInteger(ttlMs)) return null;
  return { event: m[1] as AnnouncedEvent, ver: m[2] as string, token, ttlMs, instanceId: m[5] as string };
}

const SWITCHOVER = /^switchover\|([0-9a-f]{1,32})\|([^|]{1,128})\|(\d{1,16})\|([^|]{1,128})$/;

/** Parses a switchover request ("switchover|<id>|<from>|<token>|<to>"); null for anything else. */
export function parseSwitchoverRequest(message: string): SwitchoverRequest | null {
  const m = SWITCHOVER.exec(message);
  if (!m) return null;
  const token = Number(m[3]);
  return Number.isSafeInteger(token) ? { id: m[1] as string, from: m[2] as string, token, to: m[4] as string } : null;
}

export function formatSwitchoverRequest(r: SwitchoverRequest): string {
  return `switchover|${r.id}|${r.from}|${r.token}|${r.to}`;
}

/** The longest lease TTL the configuration allows; a record claiming more is clamped to it. */
export const MAX_TTL_MS = 3_600_000;
