import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstActiveMonoMs, reportedSwitchoverMs, switchoverGap } from '../../tools/bench/role-log';
import { parseRoleChange, type RoleRecord } from '../../tools/kit/leadership';
import { LineSplitter } from '../../tools/kit/replica';

/* What the switchover and init figures of `npm run bench` are computed from: the replicas' "role changed" lines. */

const line = (fields: Record<string, unknown>): string =>
  JSON.stringify({ level: 30, time: 1_765_000_000_000, pid: 1, instance_id: 'bench-1', msg: 'role changed', ...fields });

const rec = (from: string, to: string, monoMs: number, extra: Partial<RoleRecord> = {}): RoleRecord => ({
  from,
  to,
  token: null,
  monoMs,
  validUntilMonoMs: null,
  ...extra,
});

describe('bench role-change lines: parsing', () => {
  it('reads from, to, reason, token, mono_ms and valid_until_mono_ms', () => {
    assert.deepEqual(
      parseRoleChange(line({ from: 'active', to: 'standby', reason: 'switchover to bench-2', token: 7, mono_ms: 1234.567, valid_until_mono_ms: 1234.567 })),
      { from: 'active', to: 'standby', reason: 'switchover to bench-2', token: 7, monoMs: 1234.567, validUntilMonoMs: 1234.567 },
    );
    assert.deepEqual(parseRoleChange(line({ from: 'standby', to: 'active', reason: 'acquired', token: 8, mono_ms: 1240 })), {
      from: 'standby',
      to: 'active',
      reason: 'acquired',
      token: 8,
      monoMs: 1240,
      validUntilMonoMs: null,
    });
  });

  it('ignores other lines, lines that are not JSON, and role changes without a monotonic time', () => {
    assert.equal(parseRoleChange(JSON.stringify({ msg: 'lease renewed', mono_ms: 1 })), null);
    assert.equal(parseRoleChange('role changed, but not JSON'), null);
    assert.equal(parseRoleChange('{"msg":"role changed"'), null);
    assert.equal(parseRoleChange(line({ from: 'standby', to: 'active' })), null);
    assert.equal(parseRoleChange(line({ from: 'standby', to: 'active', mono_ms: '12' })), null);
    assert.equal(parseRoleChange('"role changed"'), null);
    assert.equal(parseRoleChange('null'), null);
  });

  it('splits chunks into whole lines, keeping an unfinished one for the next chunk', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('{"a":1}\n{"b"'), ['{"a":1}']);
    assert.deepEqual(s.push(':2}'), []);
    assert.deepEqual(s.push('\n\n{"c":3}\n'), ['{"b":2}', '', '{"c":3}']);
    assert.deepEqual(s.push(''), []);
  });
});

describe('bench switchover gap', () => {
  const oldLeader = [
    rec('unknown', 'standby', 100),
    rec('standby', 'active', 200, { token: 1 }),
    rec('active', 'standby', 5_000, { token: 1, reason: 'switchover to bench-2', validUntilMonoMs: 5_000 }),
  ];
  const next = [rec('unknown', 'standby', 110), rec('standby', 'active', 5_012.5, { token: 2, reason: 'handed over' })];

  it("is the target's start minus the old leader's step-down, with the tokens", () => {
    assert.deepEqual(switchoverGap(oldLeader, next, 'bench-2', 4_900), {
      stepDownMonoMs: 5_000,
      oldEndMonoMs: 5_000,
      activeMonoMs: 5_012.5,
      oldToken: 1,
      newToken: 2,
      gapMs: 12.5,
      overlapMs: 0,
    });
  });

  it('is null until both lines are there, and counts only lines at or after the start of the trial', () => {
    assert.equal(switchoverGap(oldLeader, next.slice(0, 1), 'bench-2', 4_900), null);
    assert.equal(switchoverGap(oldLeader.slice(0, 2), next, 'bench-2', 4_900), null);
    // The target's first leadership long ago is not this switchover's.
    const earlier = [rec('standby', 'active', 50, { token: 0 }), ...next];
    assert.equal(switchoverGap(oldLeader, earlier, 'bench-2', 4_900)?.activeMonoMs, 5_012.5);
    assert.equal(switchoverGap(oldLeader, next, 'bench-2', 5_001), null);
  });

  it('needs a step-down for a switchover to this target, not any step-down', () => {
    const lost = [rec('standby', 'active', 200), rec('active', 'standby', 5_000, { reason: 'lease lost' })];
    assert.equal(switchoverGap(lost, next, 'bench-2', 0), null);
    const other = [rec('standby', 'active', 200), rec('active', 'standby', 5_000, { reason: 'switchover to bench-3' })];
    assert.equal(switchoverGap(other, next, 'bench-2', 0), null);
  });

  it('reports an overlap when the new leader started before the old one ended', () => {
    const late = [rec('active', 'standby', 5_020, { reason: 'switchover to bench-2', validUntilMonoMs: 5_020 })];
    const g = switchoverGap(late, next, 'bench-2', 0);
    assert.equal(g?.gapMs, -7.5);
    assert.equal(g?.overlapMs, 7.5);
  });

  it('a step-down written late ends the old leadership at its valid-until (as the chaos checker counts it)', () => {
    const paused = [rec('active', 'standby', 5_020, { reason: 'switchover to bench-2', validUntilMonoMs: 4_990 })];
    const g = switchoverGap(paused, next, 'bench-2', 0);
    assert.equal(g?.gapMs, -7.5, 'the gap is between the lines');
    assert.equal(g?.oldEndMonoMs, 4_990);
    assert.equal(g?.overlapMs, 0, 'but nobody led twice');
  });
});

describe('bench first leader', () => {
  it('is the earliest change to ACTIVE of any replica', () => {
    assert.equal(firstActiveMonoMs([[rec('unknown', 'standby', 10)], [rec('unknown', 'standby', 11)]]), null);
    assert.equal(firstActiveMonoMs([]), null);
    assert.equal(
      firstActiveMonoMs([
        [rec('unknown', 'standby', 10), rec('standby', 'active', 900)],
        [rec('unknown', 'standby', 11), rec('standby', 'active', 400), rec('active', 'standby', 500)],
      ]),
      400,
    );
  });
});

describe('bench: the time grinder switchover reports', () => {
  it('reads "in N ms" from its success line', () => {
    assert.equal(reportedSwitchoverMs('switched over: bench-1 (token 3) -> bench-2 (token 4) in 27 ms\n'), 27);
    assert.equal(reportedSwitchoverMs('nothing here\n'), null);
    assert.equal(reportedSwitchoverMs(''), null);
  });
});
