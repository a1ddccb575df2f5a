/**
 * How long a standby has watched the current lease record version stand still, on its own
 * monotonic clock. A version may be taken over once it has stood still for its wait (the longest
 * TTL any holder of it may be using), or at once when this replica heard its release announced or
 * wrote it itself. Pure bookkeeping: time comes in as arguments, so unit tests need no clock.
 */
export interface WatchedVersion {
  ver: string;
  /** Local monotonic time of the first sight of this version (a reply's arrival, never its sending). */
  firstSeenAt: number;
  waitMs: number;
}

/** How many superseded versions are remembered, to recognise a reply that left Redis before an announcement. */
const HISTORY = 16;

export class VersionWatch {
  private current: WatchedVersion | null = null;
  private readonly superseded: string[] = [];

  /**
   * Records a sighting. Only a new version restarts the wait; a shorter wait learned later for the
   * same version never shortens it, except for a release heard or a version we wrote ourselves.
   * A version that was already superseded is an older reading arriving late (a reply read before a
   * renewal whose announcement came first) and is ignored: the newer version is watched, and it
   * is the later one of the two, so ignoring never shortens a wait.
   */
  saw(ver: string, at: number, waitMs: number): void {
    const c = this.current;
    if (c && c.ver === ver) {
      if (waitMs === 0) c.waitMs = 0;
      else if (c.waitMs !== 0) c.waitMs = Math.max(c.waitMs, waitMs);
      return;
    }
    if (this.superseded.includes(ver)) return;
    if (c) {
      this.superseded.push(c.ver);
      if (this.superseded.length > HISTORY) this.superseded.shift();
    }
    this.current = { ver, firstSeenAt: at, waitMs };
  }

  /** Whether `ver` was watched once and then replaced by a newer version. */
  replaced(ver: string): boolean {
    return this.superseded.includes(ver);
  }

  /** Forget everything seen: after a break in the connection the record may have changed unseen. */
  reset(): void {
    this.current = null;
    this.superseded.length = 0;
  }

  /** The version that may be taken over at `now`, if any. */
  eligibleVer(now: number): string | null {
    const c = this.current;
    return c && now >= c.firstSeenAt + c.waitMs ? c.ver : null;
  }

  /** When the watched version becomes eligible; null when nothing is watched. */
  eligibleAt(): number | null {
    const c = this.current;
    return c ? c.firstSeenAt + c.waitMs : null;
  }

  get watched(): WatchedVersion | null {
    return this.current;
  }
}
