/*
 * The chaos checker: pure functions from what a run recorded to a verdict. No I/O, no clocks, so
 * unit tests can feed it synthetic records (including violating ones) and see it catch them.
 *
 * Every time is in ms on CLOCK_MONOTONIC, the one clock every process on the host shares
 * (process.hrtime in the harness and in the replicas).
 *
 * Inputs:
 * - the fenced stream's entries (merged from snapshots, in stream order): each is a write Redis
 *   ACCEPTED (the fenced script only appends what it accepts), with the writer's token, instance,
 *   sequence and the writer's monotonic time when it sent the write;
 * - every replica incarnation's "role changed" records, plus how the incarnation ended (killed by
 *   the harness at a known time, exited on its own, or still running at the end of observation);
 * - the faults the harness injected.
 *
 * Leadership intervals are rebuilt from the role changes as tools/kit/leadership.ts describes.
 *
 * Safety (both must be 0):
 * - overlaps: two leadership intervals of different leaderships that share time, whether or not
 *   they did any work (the promise is never two ACTIVE replicas, not only no two writers);
 * - stale writes accepted: an accepted entry whose token is lower than one accepted before it in
 *   stream order, or whose writer time lies outside its own leadership interval (or that belongs
 *   to no leadership the replicas ever reported).
 *
 * Liveness (reported): the longest time without an ACTIVE replica (a gap in the union of all
 * intervals) and availability = covered time / observed time, both from the first leadership to
 * the end of observation.
 */

import { findOverlaps, leadershipIntervals, TIME_EPSILON_MS, type IncarnationRecord, type Interval, type Overlap } from '../kit/leadership';

export const FAULT_KINDS = [
  'kill',
  'zombie',
  'redis-restart',
  'redis-wipe',
  'latency',
  'cut',
  'partition',
  'record-delete',
  'evict',
  'counter-corrupt',
  'rollback',
  'clock-step',
  'master-kill',
  'switchover',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FAULT_DESCRIPTIONS: Record<FaultKind, string> = {
  kill: 'SIGKILL a replica, start it again',
  zombie: 'SIGSTOP the ACTIVE replica for longer than the TTL, then SIGCONT',
  'redis-restart': 'restart Redis, keeping its data (appendonly)',
  'redis-wipe': 'restart Redis with all data lost',
  latency: 'added latency between one replica and Redis',
  cut: 'connections between one replica and Redis reset, then healed',
  partition: 'bytes between one replica and Redis held, then delivered late',
  'record-delete': 'DEL of the lease record (an operator, or an eviction under allkeys-*)',
  evict:
    'memory pressure under maxmemory-policy volatile-ttl (the default of several managed Redis offerings): filler keys with a TTL evicted while the lease keys stay',
  'counter-corrupt': 'the token counter set below the fence, to garbage, above 2^53, or just below it',
  rollback: 'Redis restarted with an older lease record, counter and fence (a restore, or AOF everysec after a power loss)',
  'clock-step': "Redis' wall clock stepped an hour forward or back, then back again",
  'master-kill': 'SIGKILL the Redis master (Sentinel mode): the Sentinels promote the replica; the old master comes back as a replica',
  switchover: '`grinder switchover` (the operator command) to a healthy standby, whatever else is going on',
};

/** What each mode can inject: network faults need the per-replica proxies of standalone mode. */
export const STANDALONE_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter((k) => k !== 'master-kill');
export const SENTINEL_FAULTS: readonly FaultKind[] = ['kill', 'zombie', 'master-kill', 'record-delete', 'counter-corrupt', 'switchover'];

export interface StreamEntry {
  /** Redis stream entry id ("<ms>-<seq>"). */
  id: string;
  /** Which Redis data lifetime the entry belongs to (bumped by every restart that lost the data). */
  epoch: number;
  token: number;
  instance: string;
  seq: number;
  /** The writer's monotonic time when it sent the write. */
  monoMs: number;
  wallMs: number;
}

export interface FaultRecord {
  kind: FaultKind;
  /** The instance it hit, when it hit one replica. */
  target: string | null;
  startMonoMs: number;
  endMonoMs: number;
  detail: string;
}

export interface RunRecords {
  seed: number;
  replicas: number;
  ttlMs: number;
  renewMs: number;
  /** When the harness started its first replica. */
  startMonoMs: number;
  /** End of observation: replicas were stopped (and recorded) at or after this. */
  endMonoMs: number;
  entries: StreamEntry[];
  incarnations: IncarnationRecord[];
  faults: FaultRecord[];
  /** Problems of the harness itself (a replica that would not start, Redis that would not come back...). */
  harnessErrors: string[];
}

export interface StaleWrite {
  entry: StreamEntry;
  reason: string;
}

export interface Gap {
  startMonoMs: number;
  endMonoMs: number;
  ms: number;
  /** Faults running during, or ending at most one TTL before, the gap. */
  faults: FaultKind[];
}

export interface ChaosReport {
  seed: number;
  replicas: number;
  ttlMs: number;
  renewMs: number;
  observedMs: number;
  faultsByKind: Record<FaultKind, number>;
  faultsTotal: number;
  faults: (FaultRecord & { atS: number })[];
  incarnations: number;
  unexpectedExits: string[];
  leaderships: number;
  leadershipsWithWork: number;
  intervals: Interval[];
  acceptedWrites: number;
  acceptedByInstance: Record<string, number>;
  rejectedWrites: number;
  overlaps: Overlap[];
  staleWrites: StaleWrite[];
  longestNoLeader: Gap | null;
  availabilityPct: number | null;
  /** From the first leadership to the end of observation. */
  availabilityWindowMs: number;
  /** Longest time between two accepted writes (writer times), after the first one. */
  longestWriteGapMs: number | null;
  harnessErrors: string[];
  safe: boolean;
  verdict: 'PASS' | 'FAIL: safety violated' | 'FAIL: harness error';
}

const keyOf = (instance: string, token: number): string => `${instance}#${token}`;

/** Merges stream snapshots: dedupes by (id, token, instance, seq), orders by (epoch, id). */
export function mergeSnapshots(snapshots: readonly (readonly StreamEntry[])[]): StreamEntry[] {
  const seen = new Map<string, StreamEntry>();
  for (const snap of snapshots) {
    for (const e of snap) {
      const k = `${e.id}|${e.token}|${e.instance}|${e.seq}`;
      if (!seen.has(k)) seen.set(k, e);
    }
  }
  return [...seen.values()].sort(compareStreamOrder);
}

export function compareStreamOrder(a: StreamEntry, b: StreamEntry): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  return compareIds(a.id, b.id);
}

export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am !== bm ? am - bm : as - bs;
}

/**
 * Accepted writes that a correct fence would have rejected, or that were sent by a replica that
 * was not leading with that token at the time. Also counts each interval's accepted writes.
 */
export function findStaleWrites(entries: readonly StreamEntry[], intervals: readonly Interval[]): StaleWrite[] {
  const byKey = new Map<string, Interval[]>();
  for (const iv of intervals) {
    const k = keyOf(iv.instance, iv.token);
    const list = byKey.get(k) ?? [];
    list.push(iv);
    byKey.set(k, list);
  }
  const out: StaleWrite[] = [];
  let highest: StreamEntry | null = null;
  for (const e of entries) {
    if (highest && e.token < highest.token) {
      out.push({ entry: e, reason: `token ${e.token} is lower than token ${highest.token} (${highest.instance}, entry ${highest.id}) accepted before it` });
    }
    if (!highest || e.token > highest.token) highest = e;
    const candidates = byKey.get(keyOf(e.instance, e.token));
    if (!candidates) {
      out.push({ entry: e, reason: `no replica reported leading as ${e.instance} with token ${e.token}` });
      continue;
    }
    const home = candidates.find((iv) => e.monoMs >= iv.startMonoMs - TIME_EPSILON_MS && e.monoMs <= iv.endMonoMs + TIME_EPSILON_MS);
    if (home) {
      home.acceptedWrites += 1;
    } else {
      const iv = candidates[0] as Interval;
      const where =
        e.monoMs < iv.startMonoMs
          ? `${(iv.startMonoMs - e.monoMs).toFixed(3)} ms before it began`
          : `${(e.monoMs - iv.endMonoMs).toFixed(3)} ms after it ended (${iv.endedBy})`;
      out.push({ entry: e, reason: `written at mono ${e.monoMs.toFixed(3)}, outside the leadership ${e.instance}#${e.token}: ${where}` });
    }
  }
  return out;
}

/** Gaps in the union of the intervals within [from, to]. */
export function noLeaderGaps(intervals: readonly Interval[], from: number, to: number): { start: number; end: number }[] {
  const sorted = [...intervals].sort((a, b) => a.startMonoMs - b.startMonoMs);
  const gaps: { start: number; end: number }[] = [];
  let covered = from;
  for (const iv of sorted) {
    if (iv.endMonoMs <= covered) continue;
    if (iv.startMonoMs > covered) gaps.push({ start: covered, end: Math.min(iv.startMonoMs, to) });
    covered = Math.max(covered, iv.endMonoMs);
    if (covered >= to) break;
  }
  if (covered < to) gaps.push({ start: covered, end: to });
  return gaps.filter((g) => g.end > g.start);
}

export function analyze(rec: RunRecords): ChaosReport {
  const intervals = leadershipIntervals(rec.incarnations, rec.endMonoMs);
  const staleWrites = findStaleWrites(rec.entries, intervals);
  const overlaps = findOverlaps(intervals);

  const faultsByKind = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  for (const f of rec.faults) faultsByKind[f.kind] += 1;

  const acceptedByInstance: Record<string, number> = {};
  for (const e of rec.entries) acceptedByInstance[e.instance] = (acceptedByInstance[e.instance] ?? 0) + 1;

  const firstStart = intervals.length > 0 ? Math.min(...intervals.map((i) => i.startMonoMs)) : null;
  let longestNoLeader: Gap | null = null;
  let availabilityPct: number | null = null;
  let availabilityWindowMs = 0;
  if (firstStart !== null && rec.endMonoMs > firstStart) {
    availabilityWindowMs = rec.endMonoMs - firstStart;
    const gaps = noLeaderGaps(intervals, firstStart, rec.endMonoMs);
    const down = gaps.reduce((s, g) => s + (g.end - g.start), 0);
    availabilityPct = (100 * (availabilityWindowMs - down)) / availabilityWindowMs;
    for (const g of gaps) {
      if (!longestNoLeader || g.end - g.start > longestNoLeader.ms) {
        const faults = rec.faults.filter((f) => f.startMonoMs <= g.end && f.endMonoMs + rec.ttlMs >= g.start).map((f) => f.kind);
        longestNoLeader = { startMonoMs: g.start, endMonoMs: g.end, ms: g.end - g.start, faults };
      }
    }
    if (!longestNoLeader) longestNoLeader = { startMonoMs: firstStart, endMonoMs: firstStart, ms: 0, faults: [] };
  }

  let longestWriteGapMs: number | null = null;
  const writeTimes = rec.entries.map((e) => e.monoMs).sort((a, b) => a - b);
  for (let i = 1; i < writeTimes.length; i++) {
    const g = (writeTimes[i] as number) - (writeTimes[i - 1] as number);
    if (longestWriteGapMs === null || g > longestWriteGapMs) longestWriteGapMs = g;
  }

  const unexpectedExits = rec.incarnations.flatMap((inc) =>
    inc.end.kind === 'exited' ? [`${inc.instance} (incarnation ${inc.incarnation}) exited by itself with code ${String(inc.end.code)}`] : [],
  );
  const harnessErrors = [...rec.harnessErrors, ...unexpectedExits];
  const safe = overlaps.length === 0 && staleWrites.length === 0;
  return {
    seed: rec.seed,
    replicas: rec.replicas,
    ttlMs: rec.ttlMs,
    renewMs: rec.renewMs,
    observedMs: rec.endMonoMs - rec.startMonoMs,
    faultsByKind,
    faultsTotal: rec.faults.length,
    faults: rec.faults.map((f) => ({ ...f, atS: (f.startMonoMs - rec.startMonoMs) / 1000 })),
    incarnations: rec.incarnations.length,
    unexpectedExits,
    leaderships: intervals.length,
    leadershipsWithWork: intervals.filter((i) => i.acceptedWrites > 0).length,
    intervals,
    acceptedWrites: rec.entries.length,
    acceptedByInstance,
    rejectedWrites: rec.incarnations.reduce((s, i) => s + i.rejectedWrites, 0),
    overlaps,
    staleWrites,
    longestNoLeader,
    availabilityPct,
    availabilityWindowMs,
    longestWriteGapMs,
    harnessErrors,
    safe,
    verdict: !safe ? 'FAIL: safety violated' : harnessErrors.length > 0 ? 'FAIL: harness error' : 'PASS',
  };
}

/** 0 = safe and the harness worked; 1 = safety violated; 2 = the harness failed (see harnessErrors). */
export function exitCodeFor(report: ChaosReport): number {
  if (!report.safe) return 1;
  return report.harnessErrors.length > 0 ? 2 : 0;
}

/** The report as a human reads it. Times are seconds since the run started. */
export function formatReport(report: ChaosReport, startMonoMs: number): string {
  const at = (mono: number): string => `${((mono - startMonoMs) / 1000).toFixed(3)}s`;
  const L: string[] = [];
  L.push('GRINDER HA chaos report');
  L.push(
    `  seed ${report.seed}, ${report.replicas} replicas, TTL ${report.ttlMs} ms, renew ${report.renewMs} ms, observed ${(report.observedMs / 1000).toFixed(1)} s`,
  );
  L.push('');
  L.push(`Faults injected: ${report.faultsTotal}`);
  for (const k of FAULT_KINDS) L.push(`  ${k.padEnd(14)} ${String(report.faultsByKind[k]).padStart(3)}   ${FAULT_DESCRIPTIONS[k]}`);
  L.push('');
  L.push(`Replica processes: ${report.incarnations} (restarts included)`);
  L.push(`Leaderships: ${report.leaderships} (${report.leadershipsWithWork} with accepted writes)`);
  const by = Object.entries(report.acceptedByInstance)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([i, n]) => `${i} ${n}`)
    .join(', ');
  L.push(`Accepted writes: ${report.acceptedWrites}${by ? ` (${by})` : ''}`);
  L.push(`Rejected (fenced) writes: ${report.rejectedWrites}`);
  L.push('');
  L.push('Safety');
  L.push(`  overlapping leaderships:     ${report.overlaps.length}   (must be 0)`);
  for (const o of report.overlaps.slice(0, 20)) {
    L.push(
      `    ${o.a.instance}#${o.a.token} [${at(o.a.startMonoMs)}, ${at(o.a.endMonoMs)}] and ${o.b.instance}#${o.b.token} [${at(o.b.startMonoMs)}, ${at(o.b.endMonoMs)}] share ${o.overlapMs.toFixed(3)} ms`,
    );
  }
  L.push(`  stale-token writes accepted: ${report.staleWrites.length}   (must be 0)`);
  for (const s of report.staleWrites.slice(0, 20)) {
    L.push(
      `    entry ${s.entry.id} (epoch ${s.entry.epoch}) by ${s.entry.instance} seq ${s.entry.seq} token ${s.entry.token} at ${at(s.entry.monoMs)}: ${s.reason}`,
    );
  }
  L.push('');
  L.push('Availability (from the first leadership to the end of observation)');
  if (report.availabilityPct === null || report.longestNoLeader === null) {
    L.push('  no replica ever became ACTIVE');
  } else {
    const g = report.longestNoLeader;
    const near = g.faults.length > 0 ? `, around: ${[...new Set(g.faults)].join(', ')}` : '';
    L.push(`  availability: ${report.availabilityPct.toFixed(2)} % of ${(report.availabilityWindowMs / 1000).toFixed(1)} s`);
    L.push(`  longest time without an ACTIVE replica: ${g.ms.toFixed(0)} ms (${at(g.startMonoMs)} to ${at(g.endMonoMs)}${near})`);
    if (report.longestWriteGapMs !== null) L.push(`  longest time between two accepted writes: ${report.longestWriteGapMs.toFixed(0)} ms`);
  }
  L.push('');
  L.push('Fault timeline');
  for (const f of report.faults) {
    L.push(`  ${at(f.startMonoMs).padStart(9)} +${((f.endMonoMs - f.startMonoMs) / 1000).toFixed(2)}s  ${f.kind.padEnd(14)} ${f.target ?? '-'}  ${f.detail}`);
  }
  if (report.harnessErrors.length > 0) {
    L.push('');
    L.push('Harness errors');
    for (const e of report.harnessErrors) L.push(`  ${e}`);
  }
  L.push('');
  L.push(`Verdict: ${report.verdict}`);
  return L.join('\n');
}
