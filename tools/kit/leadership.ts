/*
 * Leadership rebuilt from the replicas' own "role changed" log lines, as the chaos checker, the
 * fault tests and the bench all read them. Pure: no I/O, no clocks.
 *
 * Every time is in ms on CLOCK_MONOTONIC (mono_ms), the one clock every process on the host shares.
 *
 * Leadership interval of (instance, token): from the mono_ms of its `to: active` record to the
 * first of: the mono_ms of the record that ends it and its valid_until_mono_ms (a paused process
 * writes that record late, but says until when the leadership was valid); or the kill time when
 * the incarnation was SIGKILLed while leading; or the end of observation.
 */

/** Times are rounded to 1 µs in the records (toFixed(3) / Math.round(x*1000)/1000). */
export const TIME_EPSILON_MS = 0.001;

export interface RoleRecord {
  from: string;
  to: string;
  token: number | null;
  monoMs: number;
  validUntilMonoMs: number | null;
  reason?: string;
}

export interface IncarnationRecord {
  instance: string;
  /** 0 for the first process of this instance, 1 after its first restart, ... */
  incarnation: number;
  startedMonoMs: number;
  /** How the process ended: killed by the harness, exited by itself, or still running at the end. */
  end: { kind: 'killed'; monoMs: number } | { kind: 'exited'; monoMs: number; code: number | null } | { kind: 'running' };
  roleChanges: RoleRecord[];
  /** Log lines saying a fenced write was rejected (the writer then stepped down). */
  rejectedWrites: number;
}

export interface Interval {
  instance: string;
  incarnation: number;
  token: number;
  startMonoMs: number;
  endMonoMs: number;
  /** What ended it: 'record' (role change), 'valid-until', 'killed', 'exited', 'end-of-run'. */
  endedBy: string;
  acceptedWrites: number;
}

export interface Overlap {
  a: Interval;
  b: Interval;
  overlapMs: number;
}

/** Leadership intervals from each incarnation's role changes and how it ended. */
export function leadershipIntervals(incarnations: readonly IncarnationRecord[], endMonoMs: number): Interval[] {
  const out: Interval[] = [];
  for (const inc of incarnations) {
    let open: { token: number; start: number } | null = null;
    const close = (end: number, endedBy: string): void => {
      if (!open) return;
      out.push({
        instance: inc.instance,
        incarnation: inc.incarnation,
        token: open.token,
        startMonoMs: open.start,
        endMonoMs: Math.max(open.start, end),
        endedBy,
        acceptedWrites: 0,
      });
      open = null;
    };
    const records = [...inc.roleChanges].sort((a, b) => a.monoMs - b.monoMs);
    for (const r of records) {
      if (r.from === 'active' || (open && r.to !== 'active')) {
        const byValidity = r.validUntilMonoMs !== null && r.validUntilMonoMs < r.monoMs;
        close(byValidity ? (r.validUntilMonoMs as number) : r.monoMs, byValidity ? 'valid-until' : 'record');
      }
      if (r.to === 'active') {
        close(r.monoMs, 'record');
        // A record without a token cannot be matched with writes; -1 never matches a real token.
        open = { token: r.token ?? -1, start: r.monoMs };
      }
    }
    if (inc.end.kind === 'killed') close(Math.min(inc.end.monoMs, endMonoMs), 'killed');
    else if (inc.end.kind === 'exited') close(Math.min(inc.end.monoMs, endMonoMs), 'exited');
    else close(endMonoMs, 'end-of-run');
  }
  return out.sort((a, b) => a.startMonoMs - b.startMonoMs);
}

/** Pairs of leaderships that share time. */
export function findOverlaps(intervals: readonly Interval[]): Overlap[] {
  const sorted = [...intervals].sort((a, b) => a.startMonoMs - b.startMonoMs);
  const out: Overlap[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i] as Interval;
    for (let j = i + 1; j < sorted.length; j++) {
      const b = sorted[j] as Interval;
      if (b.startMonoMs >= a.endMonoMs - TIME_EPSILON_MS) break; // sorted by start: none later overlaps a
      if (a.instance === b.instance && a.token === b.token) continue;
      const overlapMs = Math.min(a.endMonoMs, b.endMonoMs) - b.startMonoMs;
      if (overlapMs > TIME_EPSILON_MS) out.push({ a, b, overlapMs });
    }
  }
  return out;
}

/**
 * A replica's parsed JSON log line as a role change, or null when it is anything else. A role
 * change without mono_ms comes from a replica with HA disabled (SoloLeader): no lease, nothing to
 * check for overlap; every HA replica's role change has it.
 */
export function roleChangeOf(log: Record<string, unknown>): RoleRecord | null {
  if (log.msg !== 'role changed' || typeof log.mono_ms !== 'number' || typeof log.from !== 'string' || typeof log.to !== 'string') return null;
  return {
    from: log.from,
    to: log.to,
    token: typeof log.token === 'number' ? log.token : null,
    monoMs: log.mono_ms,
    validUntilMonoMs: typeof log.valid_until_mono_ms === 'number' ? log.valid_until_mono_ms : null,
    ...(typeof log.reason === 'string' ? { reason: log.reason } : {}),
  };
}

/** One replica log line as a role change, or null when it is anything else (or not JSON at all). */
export function parseRoleChange(line: string): RoleRecord | null {
  // Most lines are not role changes: skip the JSON parse for them.
  if (!line.includes('role changed')) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return null;
  }
  return typeof parsed === 'object' && parsed !== null ? roleChangeOf(parsed as Record<string, unknown>) : null;
}
