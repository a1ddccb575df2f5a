import type { HaSnapshot, LeaderContext, Role } from '../ha/role';

/*
 * The public types of the `grinder-ha` package (src/index.ts re-exports them). They import nothing
 * but src/ha/role.ts, so the declarations a user's compiler reads stay small and name no internal
 * module, no Redis client and no telemetry SDK.
 */

export type { HaSnapshot, Role };

/** Anything that logs like pino, bunyan or console: an object with the fields, then the message. */
export interface ElectorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RoleChange {
  from: Role;
  to: Role;
}

export interface ElectorOptions {
  /**
   * The Redis that holds the lease, in GRINDER_REDIS_URL's forms: `redis://[[user]:password@]host[:port][/db]`,
   * `rediss://…` (TLS), `redis+sentinel://[[user]:password@]host:port[,host:port…]/<master name>[/db]`,
   * `redis+cluster://[[user]:password@]host:port[,host:port…]`. Required.
   */
  redisUrl: string;
  /** Redis key of the lease record; every replica that competes for one leadership uses the same. Default `grinder:leader:lock`. */
  lockKey?: string;
  /** This replica's name in the lease record, logs and status. Default `grinder-<hostname>-<8 hex>`. */
  instanceId?: string;
  /** Lease TTL, 1000 to 3600000 ms: a dead leader is replaced within this time. Default 10000. */
  ttlMs?: number;
  /** How often the leader renews (and a standby looks), less than the TTL. Default a third of the TTL, at most 3000. */
  renewIntervalMs?: number;
  /** Replicas that must acknowledge each lease write (WAIT): 0 to 16, or `'auto'` (the default). */
  minReplicas?: number | 'auto';
  /** The Sentinels' own ACL user name (redis+sentinel:// only). */
  sentinelUsername?: string;
  /** The Sentinels' own password (redis+sentinel:// only); never put it in the URL. */
  sentinelPassword?: string;
  /**
   * How long stop() waits for the leader work to end after its signal fired, 0 to 3600000 ms.
   * Work that ends within it: the lease is released and the next replica takes over at once. Work
   * still running then, or ending within a quarter renew interval of the lease deadline or later,
   * or after a host suspend: the lease is not released and runs out one TTL after the last renewal.
   * Default 2000.
   */
  stopGraceMs?: number;
  /** Where the elector logs. Default: JSON lines at `warn` and above on stderr (pino). */
  logger?: ElectorLogger;
  /** Told about every role change (from `unknown`, `standby`, `active` to another), after it happened. */
  onRoleChange?: (change: RoleChange) => void;
}

/** What a fenced append did: accepted (the entry's id), or rejected because a newer leadership exists. */
export type FenceAppendResult = { accepted: true; id: string } | { accepted: false; newestToken: number };

export interface FenceAppendOptions {
  /** Approximate cap on the stream's length (XADD MAXLEN ~), 1 to 100000000. Default 10000. */
  maxLen?: number;
}

/**
 * Fenced writes with this leadership's token. A write is rejected once any newer leadership exists
 * (a newer token was handed out, stands in the lease record, or was accepted by any fenced write of
 * this lock), so a paused or partitioned ex-leader cannot write after its successor took over.
 */
export interface Fence {
  /** The fencing token every write of this handle carries. */
  readonly token: number;
  /** A key in the lock key's Redis Cluster slot (`{<lock key>}:<name>`), which fenced streams on a Cluster need. */
  key(name: string): string;
  /**
   * Appends `fields` (plus `token`) to the stream `streamKey` if this leadership is still the
   * newest. On `{ accepted: false }` stop the work and call `ctx.resign()`: someone newer leads.
   * Rejects (throws) when Redis cannot be reached or answers with an error.
   */
  append(streamKey: string, fields: Record<string, string | number>, options?: FenceAppendOptions): Promise<FenceAppendResult>;
}

/** What the leader work is given for one leadership. */
export interface LeaderWorkContext extends LeaderContext {
  readonly fence: Fence;
}

/**
 * Runs while this replica is ACTIVE, once per leadership. It must end soon after `ctx.signal`
 * fires. Returning or throwing while still ACTIVE makes the replica resign (with back-off).
 */
export type LeaderWork = (ctx: LeaderWorkContext) => Promise<void> | void;

export interface Elector {
  readonly instanceId: string;
  readonly lockKey: string;
  /**
   * Registers the leader work and starts electing. The work runs each time this replica becomes
   * ACTIVE, one run at a time. Call once: a second call throws.
   */
  run(work: LeaderWork): void;
  /** The role now, judged against the lease deadline at the moment of asking. */
  role(): Role;
  /** Role, holder, token, lease time left, Redis facts: what /status shows for a replica. */
  status(): HaSnapshot;
  /**
   * Graceful stop: fires the work's signal, waits for the work (at most `stopGraceMs`), releases
   * the lease if the work ended, closes the Redis connections. Safe to call more than once.
   */
  stop(): Promise<void>;
}
