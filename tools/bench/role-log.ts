/**
 * What the switchover and init scenarios read from the replicas' own "role changed" log lines
 * (parsed by tools/kit/leadership.ts). Pure and unit-tested (test/unit/bench-role-log.test.ts):
 * the gap in docs/benchmarks.md is exactly what these functions compute from the lines, nothing
 * else.
 *
 * Every time is mono_ms, CLOCK_MONOTONIC: the clock every process on the host shares, so a line of
 * one replica compares with a line of another and with the harness' monoNow().
 */
import type { RoleRecord } from '../kit/leadership';

export interface SwitchoverGap {
  /** mono_ms of the old leader's step-down line (from=active, to=standby, reason "switchover to <target>"). */
  stepDownMonoMs: number;
  /** When the old leadership ended: the step-down, or its valid-until when that came first. */
  oldEndMonoMs: number;
  /** mono_ms of the target's line from=standby, to=active. */
  activeMonoMs: number;
  oldToken: number | null;
  newToken: number | null;
  /** Step-down to the new leader's start: the figure the target applies to. */
  gapMs: number;
  /** How long both led at once (0 when they did not): must be 0. */
  overlapMs: number;
}

/**
 * The gap of one switchover to `target`, from the old leader's and the target's role changes at or
 * after `sinceMonoMs`; null until both lines are there.
 */
export function switchoverGap(oldLeader: readonly RoleRecord[], next: readonly RoleRecord[], target: string, sinceMonoMs: number): SwitchoverGap | null {
  const stepDown = oldLeader.find((r) => r.monoMs >= sinceMonoMs && r.from === 'active' && r.to === 'standby' && r.reason === `switchover to ${target}`);
  const active = next.find((r) => r.monoMs >= sinceMonoMs && r.from === 'standby' && r.to === 'active');
  if (!stepDown || !active) return null;
  // A leader that writes its step-down late (a pause) says until when it was valid: that, not the
  // late line, is when it stopped leading (as the chaos checker counts it).
  const oldEnd = stepDown.validUntilMonoMs !== null ? Math.min(stepDown.validUntilMonoMs, stepDown.monoMs) : stepDown.monoMs;
  return {
    stepDownMonoMs: stepDown.monoMs,
    oldEndMonoMs: oldEnd,
    activeMonoMs: active.monoMs,
    oldToken: stepDown.token,
    newToken: active.token,
    gapMs: active.monoMs - stepDown.monoMs,
    overlapMs: Math.max(0, oldEnd - active.monoMs),
  };
}

/** mono_ms of the first change to ACTIVE among all the replicas' records, or null when none led yet. */
export function firstActiveMonoMs(replicas: readonly (readonly RoleRecord[])[]): number | null {
  let first: number | null = null;
  for (const records of replicas) {
    for (const r of records) if (r.to === 'active' && (first === null || r.monoMs < first)) first = r.monoMs;
  }
  return first;
}

/** The handover time `grinder switchover` prints ("switched over: a (token 1) -> b (token 2) in 12 ms"), or null. */
export function reportedSwitchoverMs(stdout: string): number | null {
  const m = /^switched over: .* in (\d+) ms$/m.exec(stdout);
  return m ? Number(m[1]) : null;
}
