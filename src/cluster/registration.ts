import { ROLES, type Role } from '../ha/role';

/**
 * What a member writes at `member(id)` with every heartbeat (src/redis/scripts/heartbeat-3.lua),
 * as JSON. The script adds `heartbeat_ms` itself, from Redis' clock; everything else is the
 * member's own view at the moment it sent the heartbeat.
 */
export interface Registration {
  instance_id: string;
  /** The role its elector reported (judged against its lease deadline at that moment). */
  role: Role;
  /** Its token while ACTIVE, else the last token it saw; null before it saw any. */
  fencing_token: number | null;
  /** ACTIVE: until its own lease deadline; STANDBY: until it may take the lease over (as /status). */
  lease_remaining_ms: number | null;
  /** GRINDER_ADVERTISE_URL. */
  http_url: string;
  version: string;
  /** When the process started (ISO 8601, the member's clock). */
  started_at: string;
  /** Its election loop runs and its lease connection is up. */
  healthy: boolean;
  /** Its lock TTL and renew interval: how often to expect its heartbeat. */
  ttl_ms: number;
  renew_interval_ms: number;
}

/** A registration as read back: with the heartbeat time the script added (Redis' clock, ms). */
export interface StoredRegistration extends Registration {
  heartbeat_ms: number;
}

const nullableInt = (v: unknown): v is number | null => v === null || (typeof v === 'number' && Number.isSafeInteger(v));
const positiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** A stored registration, or null when the text is not one (another GRINDER version, garbage). */
export function parseRegistration(text: string | null): StoredRegistration | null {
  if (text === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { instance_id, role, fencing_token, lease_remaining_ms, http_url, version, started_at, healthy, ttl_ms, renew_interval_ms, heartbeat_ms } = v as Record<
    string,
    unknown
  >;
  if (
    typeof instance_id !== 'string' ||
    typeof role !== 'string' ||
    !isRole(role) ||
    !nullableInt(fencing_token) ||
    !nullableInt(lease_remaining_ms) ||
    typeof http_url !== 'string' ||
    typeof version !== 'string' ||
    typeof started_at !== 'string' ||
    typeof healthy !== 'boolean' ||
    !positiveInt(ttl_ms) ||
    !positiveInt(renew_interval_ms) ||
    !positiveInt(heartbeat_ms)
  ) {
    return null;
  }
  // Only the known fields: whatever else a newer version adds is not passed on as if understood.
  return { instance_id, role, fencing_token, lease_remaining_ms, http_url, version, started_at, healthy, ttl_ms, renew_interval_ms, heartbeat_ms };
}

const isRole = (v: string): v is Role => (ROLES as readonly string[]).includes(v);
