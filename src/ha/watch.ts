/**
 * How long a standby has watched the current lease record version stand still, on its own
 * monotonic clock. A version may be taken over once it has stood still for its wait (the longest
 * TTL any holder of it may be using), or at once when this replica heard its release announced or
 * wrote it itself. A value, changed only by the pure functions below: time comes in as
 * arguments, so the election decision (election.ts) and its tests need no clock.
 */
export interface WatchedVersion {
  readonly ver: string;
  /** Local monotonic time of the first sight of this version (a reply's arrival, never its sending). */
  readonly firstSeenAt: number;
  readonly waitMs: number;
}

export interface VersionWatch {
  readonly current: WatchedVersion | null;
  /** Versions watched and then replaced, newest last: a reply naming one is a late reading. */
  readonly superseded: readonly string[];
}

/** Nothing watched: at the start, and after a break in the connection (the record may have changed unseen). */
export const EMPTY_WATCH: VersionWatch = { current: null, superseded: [] };

/** How many superseded versions are remembered, to recognise a reply that left Redis before an announcement. */
const HISTORY = 16;

/**
 * Records a sighting. Only a new version restarts the wait; a shorter wait learned later for the
 * same version never shortens it, except for a release heard or a version we wrote ourselves (0).
 * A version that was already superseded is an older reading arriving late (a reply read before a
 * renewal whose announcement came first) and is ignored: the newer version is watched, and it is
 * the later one of the two, so ignoring never shortens a wait.
 */
export function sawVersion(w: VersionWatch, ver: string, at: number, waitMs: number): VersionWatch {
  const c = w.current;
  if (c && c.ver === ver) {
    if (c.waitMs === 0) return w;
    const wait = waitMs === 0 ? 0 : Math.max(c.waitMs, waitMs);
    return wait === c.waitMs ? w : { ...w, current: { ...c, waitMs: wait } };
  }
  if (w.superseded.includes(ver)) return w;
  const superseded = c ? [...w.superseded, c.ver].slice(-HISTORY) : w.superseded;
  return { current: { ver, firstSeenAt: at, waitMs }, superseded };
}

/** Whether `ver` was watched once and then replaced by a newer version. */
export function wasReplaced(w: VersionWatch, ver: string): boolean {
  return w.superseded.includes(ver);
}

/** The version that may be taken over at `now`, if any. */
export function eligibleVer(w: VersionWatch, now: number): string | null {
  const c = w.current;
  return c && now >= c.firstSeenAt + c.waitMs ? c.ver : null;
}

/** When the watched version becomes eligible; null when nothing is watched. */
export function eligibleAt(w: VersionWatch): number | null {
  const c = w.current;
  return c ? c.firstSeenAt + c.waitMs : null;
}
