/**
 * Every Redis key and channel GRINDER HA uses, derived from the lock key in one place.
 *
 * Derived names carry the lock key as a Redis Cluster hash tag (`{<lock key>}:token`), so every
 * key a script touches hashes to the lock key's slot and the default lock key works on a cluster.
 * A lock key that already has a hash tag keeps it: derived names append to it instead.
 */
export interface LeaseKeys {
  /** The lease record: who leads, with which token, since which version. Never expires. */
  readonly record: string;
  /** The newest fencing token handed out. Never expires. */
  readonly counter: string;
  /** The highest token any fenced write has accepted. Never expires. */
  readonly fence: string;
  /** Pub/sub channel for announcements (acquired, renewed, released, barrier). */
  readonly events: string;
  /** Default stream the built-in live loop appends to. */
  readonly liveStream: string;
  /**
   * Sorted set of registered members (instance id → expiry, Redis' clock in ms): the index of the
   * cluster view. Each member's details stand at `member(id)`, which expires.
   */
  readonly members: string;
  /**
   * Sorted set of the registered members that have seen a fencing token (instance id → expiry):
   * beside one of them, `grinder init`'s declaration is not believed (acquire-5.lua).
   */
  readonly veterans: string;
  /** A member's registration (JSON), refreshed by its heartbeat; expires one TTL after the last one. */
  member(instanceId: string): string;
  /**
   * `grinder init`'s declaration that this is a brand-new cluster (expires after its window): the
   * first acquire on a Redis with no record, counter or fence may then lead at once.
   */
  readonly init: string;
}

/** True when Redis Cluster would hash `key` by a `{…}` tag rather than the whole key. */
export function hasHashTag(key: string): boolean {
  const open = key.indexOf('{');
  if (open < 0) return false;
  const close = key.indexOf('}', open + 1);
  return close > open + 1;
}

/** `{<lock key>}:<name>`, or `<lock key>:<name>` when the lock key has a hash tag of its own: a key in the lock's Cluster slot. */
export function keyInLockSlot(lockKey: string, name: string): string {
  return `${hasHashTag(lockKey) ? lockKey : `{${lockKey}}`}:${name}`;
}

export function leaseKeys(lockKey: string): LeaseKeys {
  const k = (name: string): string => keyInLockSlot(lockKey, name);
  return {
    record: lockKey,
    counter: k('token'),
    fence: k('fence'),
    events: k('events'),
    liveStream: k('live'),
    members: k('members'),
    veterans: k('veterans'),
    member: (instanceId) => k(`member:${instanceId}`),
    init: k('init'),
  };
}

/** Whether `key` hashes to the same Cluster slot as the lock key (required for a stream that fenced writes append to). */
export function sharesLockSlot(lockKey: string, key: string): boolean {
  return hashTagOf(key) === hashTagOf(lockKey);
}

function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return key;
}
