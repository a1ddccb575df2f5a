/** `unknown` before the first attempt, then `standby` or `active`. HA disabled means `active`. */
export const ROLES = ['active', 'standby', 'unknown'] as const;
export type Role = (typeof ROLES)[number];

/** What a leader's work is given: a signal that fires the moment this replica stops being ACTIVE. */
export interface LeaderContext {
  readonly signal: AbortSignal;
  /** The fencing token of this leadership; 0 when HA is disabled (no lock, nothing to fence). */
  readonly token: number;
  readonly instanceId: string;
  /** Judges the lease deadline now: false once it has passed, even before the signal's event ran. */
  isLeader(): boolean;
  /** Steps down at once (e.g. a fenced write was rejected: someone newer leads). */
  resign(reason: string): void;
}

export type LeaderWork = (ctx: LeaderContext) => Promise<void> | void;

/** A replica's HA state at one moment, for /status, /metrics and logs. */
export interface HaSnapshot {
  role: Role;
  haEnabled: boolean;
  /** Instance id of the current holder as last seen (ours when active); null if unknown. */
  holder: string | null;
  /** Our token while active; otherwise the last token seen for the holder; null if none seen. */
  fencingToken: number | null;
  /** Time left before our own lease deadline (active), or before the holder's lease expires as last seen. */
  leaseRemainingMs: number | null;
  /** Since the start of our last successful acquire or renew; null if never. */
  lastRenewAgeMs: number | null;
  redisConnected: boolean | null;
  /** False when the election loop has not run for longer than it ever should. */
  loopHealthy: boolean;
  /** The lease record's state as this replica last saw it (held while we hold it); null if unknown or HA is off. */
  leaseState: 'held' | 'free' | 'barrier' | 'handoff' | 'foreign' | 'anomaly' | null;
  /** Redis' maxmemory-policy as read at connect; null when unknown or HA is off. */
  redisMaxmemoryPolicy: string | null;
  /** Whether Redis keeps every acknowledged write across a restart; null when unknown or HA is off. */
  redisDurable: boolean | null;
  /** standalone, sentinel or cluster; null when HA is off. */
  redisMode: 'standalone' | 'sentinel' | 'cluster' | null;
  /** "host:port" of the master the lease commands go to; null when unknown or HA is off. */
  redisMaster: string | null;
  /** Whether the last lease write reached the replicas required; null when none are required. */
  replicasAcked: boolean | null;
}

/** What the HTTP and telemetry layers need from an elector, HA or not. */
export interface HaStatusSource {
  /** Judges the lease deadline at the moment of asking. */
  currentRole(): Role;
  snapshot(): HaSnapshot;
}
