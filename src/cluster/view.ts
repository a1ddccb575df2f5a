/**
 * The cluster view: every registered member (src/cluster/membership.ts) next to what the lease
 * record says, read from Redis in one go. `grinder list`, `grinder list --json` and GET /cluster
 * all show exactly this.
 *
 * Two sources, two kinds of authority. The lease record decides who leads: a member is the leader
 * only when the record is held by it. The registrations say what each member last reported about
 * itself (role, health, token, ...) and when: a member that reports ACTIVE while the record names
 * someone else is shown as such (a stale heartbeat, or a member about to notice it lost the lease),
 * never as a second leader. Every age is measured on Redis' clock, the one the heartbeats were
 * stamped with, so neither the reader's nor the members' clocks matter.
 */
import { UnexpectedReplyError } from '../redis/commands';
import type { LeaseClient } from '../redis/connection';
import type { LeaseKeys } from '../redis/keys';
import { leaseTiming } from '../ha/timing';
import type { Role } from '../ha/role';
import { parseRegistration, type StoredRegistration } from './registration';

/** The state of the lease record, as the lease scripts read it. */
export type ClusterLeaseState =
  /** A leadership: `instance_id` leads (until its lease runs out, which only the replicas judge). */
  | 'held'
  /** Released by its holder (`instance_id`): the next replica takes it at once. */
  | 'free'
  /** Nobody may lead until the barrier has stood for `ttl_ms` (after data loss, a rollback, a first start). */
  | 'barrier'
  /** Released to one named successor (`instance_id`): a switchover in progress. */
  | 'handoff'
  /** No record at the lock key yet (or it was deleted): the next acquire writes a barrier. */
  | 'missing'
  /** A string that is not a lease record (another program's value, or another GRINDER version's). */
  | 'foreign'
  /** A key of another Redis type: somebody's data, never taken over. */
  | 'anomaly';

/** The lease record at the lock key: the authority on who leads. */
export interface ClusterLease {
  state: ClusterLeaseState;
  /** held: the leader; free: the last holder; handoff: the successor named; barrier: who wrote it; else null. */
  instance_id: string | null;
  /** The leadership's fencing token (held, free, handoff), the newest token known (barrier); else null. */
  token: number | null;
  /** The holder's TTL, or the barrier's length, in ms; null when there is no record. */
  ttl_ms: number | null;
}

/** How a member looks: `ok`, or why not. */
export type MemberHealth =
  /** It reported a running election loop and a live Redis connection, and heartbeats on time. */
  | 'ok'
  /** It reported its election loop stuck or its lease connection down. */
  | 'unhealthy'
  /** Its last heartbeat is overdue (renew interval + a Redis timeout + half a renew interval): going away? */
  | 'late';

/** One registered member, as its last heartbeat described it and as the record judges it. */
export interface ClusterMember {
  instance_id: string;
  /** The role it reported at its last heartbeat (it heartbeats right after every role change). */
  role: Role;
  /** The lease record is held by this member: the one member the cluster calls leader. */
  leader: boolean;
  /** It reported ACTIVE but the record is not held by it: a stale heartbeat or a member about to step down. */
  claims_active_without_lease: boolean;
  /** `health === 'ok'`. */
  healthy: boolean;
  health: MemberHealth;
  /** Its token while ACTIVE, else the last token it saw; null before it saw any. */
  fencing_token: number | null;
  /** What it reported (ACTIVE: until its own deadline; STANDBY: until it may take over), less the heartbeat's age; null if it knew none. */
  lease_remaining_ms: number | null;
  /** GRINDER_ADVERTISE_URL: where its /status, /readyz, /cluster are. */
  http_url: string;
  version: string;
  /** When its process started (ISO 8601, its own clock). */
  started_at: string;
  /** Its last heartbeat, on Redis' clock (ms since the epoch). */
  heartbeat_ms: number;
  /** Since its last heartbeat, ms (Redis' clock). */
  last_seen_ms: number;
  /** Until its registration expires unless it heartbeats again (one lock TTL after the last heartbeat), ms. */
  expires_in_ms: number;
}

/**
 * The JSON of GET /cluster and `grinder list --json` (snake_case, like /status).
 *
 * For a switchover target, look the member up by id and require `isHealthyStandby(member)`;
 * `leader` is the record's holder, which may be missing from `members` when it stopped
 * heartbeating (dead, or cut off from Redis) and its lease has not been taken over yet.
 */
export interface ClusterView {
  lock_key: string;
  /** Redis' clock (ms since the epoch) when the view was read: every age in it is measured against this. */
  redis_time_ms: number;
  lease: ClusterLease;
  /** Who leads according to the record (state held), else null. */
  leader: string | null;
  /** The successor a handoff record names, else null. */
  handoff_to: string | null;
  /** Registered members whose registration has not expired, by instance id. */
  members: ClusterMember[];
  /** Ids in the index whose registration could not be read (another GRINDER version?): listed, not judged. */
  unreadable: string[];
}

/** A member a switchover may hand the lease to: a STANDBY that is healthy and not the record's holder. */
export function isHealthyStandby(m: ClusterMember): boolean {
  return m.role === 'standby' && m.healthy && !m.leader;
}

export function findMember(view: ClusterView, instanceId: string): ClusterMember | null {
  return view.members.find((m) => m.instance_id === instanceId) ?? null;
}

/** What cluster-view-2.lua answered, parsed. */
export interface ClusterReadout {
  nowMs: number;
  lease: ClusterLease;
  /** Instance id → expiry of its registration (Redis' clock, ms). */
  index: { instanceId: string; expiresAtMs: number }[];
}

const RECORD_STATES: readonly string[] = ['held', 'free', 'barrier', 'handoff'] satisfies ClusterLeaseState[];

function int(v: string | number | undefined): number | null {
  if (v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

/** The script's reply (see the header of src/redis/scripts/cluster-view-2.lua) as a typed readout. */
export function parseClusterReadout(reply: unknown): ClusterReadout {
  const bad = (): never => {
    throw new UnexpectedReplyError('cluster-view', reply);
  };
  if (!Array.isArray(reply)) return bad();
  const r = reply as (string | number)[];
  const nowMs = int(r[0]);
  const count = int(r[5]);
  if (nowMs === null || count === null || count < 0 || r.length !== 6 + 2 * count) return bad();
  const rawState = String(r[1]);
  const isRecord = RECORD_STATES.includes(rawState);
  const state: ClusterLeaseState = isRecord ? (rawState as ClusterLeaseState) : rawState === 'missing' || rawState === 'foreign' ? rawState : 'anomaly';
  const lease: ClusterLease = {
    state,
    instance_id: isRecord ? String(r[4]) : null,
    token: isRecord ? int(r[2]) : null,
    ttl_ms: isRecord ? int(r[3]) : null,
  };
  const index: ClusterReadout['index'] = [];
  for (let i = 6; i < r.length; i += 2) {
    const expiresAtMs = int(r[i + 1]);
    if (expiresAtMs === null) return bad();
    index.push({ instanceId: String(r[i]), expiresAtMs });
  }
  return { nowMs, lease, index };
}

/** Heartbeats come every renew interval and take up to one Redis timeout; half an interval is slack for a busy host. */
export function lateAfterMs(reg: Pick<StoredRegistration, 'ttl_ms' | 'renew_interval_ms'>): number {
  return Math.round(reg.renew_interval_ms * 1.5) + leaseTiming(reg.ttl_ms, reg.renew_interval_ms).commandTimeoutMs;
}

/** Builds the view from the readout and the registrations it named (null: expired since, or unreadable). */
export function buildClusterView(lockKey: string, readout: ClusterReadout, registrations: ReadonlyMap<string, string | null>): ClusterView {
  const { nowMs, lease } = readout;
  const leader = lease.state === 'held' ? lease.instance_id : null;
  const members: ClusterMember[] = [];
  const unreadable: string[] = [];
  for (const { instanceId, expiresAtMs } of readout.index) {
    const text = registrations.get(instanceId) ?? null;
    // Expired between the two reads: it left, as the index would say a moment later.
    if (text === null) continue;
    const reg = parseRegistration(text);
    if (reg === null || reg.instance_id !== instanceId) {
      unreadable.push(instanceId);
      continue;
    }
    const lastSeen = Math.max(0, nowMs - reg.heartbeat_ms);
    const isLeader = leader !== null && leader === instanceId;
    const health: MemberHealth = !reg.healthy ? 'unhealthy' : lastSeen > lateAfterMs(reg) ? 'late' : 'ok';
    members.push({
      instance_id: instanceId,
      role: reg.role,
      leader: isLeader,
      claims_active_without_lease: reg.role === 'active' && !isLeader,
      healthy: health === 'ok',
      health,
      fencing_token: reg.fencing_token,
      lease_remaining_ms: reg.lease_remaining_ms === null ? null : Math.max(0, reg.lease_remaining_ms - lastSeen),
      http_url: reg.http_url,
      version: reg.version,
      started_at: reg.started_at,
      heartbeat_ms: reg.heartbeat_ms,
      last_seen_ms: lastSeen,
      expires_in_ms: Math.max(0, expiresAtMs - nowMs),
    });
  }
  members.sort((a, b) => (a.instance_id < b.instance_id ? -1 : a.instance_id > b.instance_id ? 1 : 0));
  unreadable.sort();
  return {
    lock_key: lockKey,
    redis_time_ms: nowMs,
    lease,
    leader,
    handoff_to: lease.state === 'handoff' ? lease.instance_id : null,
    members,
    unreadable,
  };
}

/**
 * Reads the cluster view: the record and the member index in one script on the lock key's node
 * (so one clock), then the registrations. Rejects when Redis does not answer (the client's own
 * errors) or answers something no GRINDER script does (UnexpectedReplyError).
 *
 *   const view = await readCluster(redisLock.client, redisLock.keys, config.lockKey);
 *   const target = findMember(view, id);
 *   if (!target || !isHealthyStandby(target)) ...
 */
export async function readCluster(client: LeaseClient, keys: LeaseKeys, lockKey: string): Promise<ClusterView> {
  const readout = parseClusterReadout(await client.grinderClusterView(keys.record, keys.members));
  const ids = readout.index.map((e) => e.instanceId);
  const texts = ids.length === 0 ? [] : await client.mget(ids.map((id) => keys.member(id)));
  return buildClusterView(lockKey, readout, new Map(ids.map((id, i) => [id, texts[i] ?? null])));
}
