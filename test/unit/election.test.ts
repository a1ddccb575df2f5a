import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  acquireAnswered,
  acquireFailed,
  announced,
  disconnected,
  initialState,
  judgeDeadline,
  planAcquire,
  renewAnswered,
  renewFailed,
  resigned,
  type AcquireSent,
  type Effect,
  type ElectionRules,
  type ElectionState,
  type EventStep,
  type Memory,
  type Now,
  type RenewSent,
} from '../../src/ha/election';
import type { AcquireResult, Announcement, RecordView, RenewResult } from '../../src/ha/lock';
import { leaseTiming } from '../../src/ha/timing';
import { sawVersion, EMPTY_WATCH } from '../../src/ha/watch';

/*
 * The election decision as tables: each row is a state, what happened and when, and the state,
 * next delay and effects the rules call for. No clock, no timers, no store.
 */

const TTL = 1_000;
const RENEW = 300;
const timing = leaseTiming(TTL, RENEW); // validity 965 ms, margin 35 ms, retry 75 ms
const rules: ElectionRules = { instanceId: 'me', timing, lockKey: 'grinder:test' };

function at(mono: number, extra: Partial<Now> = {}): Now {
  return { mono, wall: 1_700_000_000_000 + mono, workEnding: false, handingOver: false, ...extra };
}

function standby(memory: Partial<Memory> = {}): ElectionState {
  const s = initialState(rules);
  return { kind: 'standby', memory: { ...s.memory, ...memory } };
}

function leading(token: number, validUntil: number, memory: Partial<Memory> = {}, acquiredAt = 0): Extract<ElectionState, { kind: 'leading' }> {
  return { kind: 'leading', memory: standby(memory).memory, held: { lease: { token, ver: `v${token}` }, validUntil, acquiredAt }, lastClockCheck: null };
}

function record(over: Partial<RecordView>): RecordView {
  return { state: 'held', ver: 'r1', token: 50, ttlMs: TTL, maxTtlMs: TTL, instanceId: 'other', ours: false, ...over };
}

function observed(over: Partial<RecordView>, newest = 50): AcquireResult {
  return { kind: 'observed', record: record(over), newest };
}

function sentAcquire(sentAt: number, expectedVer: string | null = null, over: Partial<AcquireSent> = {}): AcquireSent {
  return { request: { expectedVer, floor: 0, barrierMs: TTL, fresh: false }, sentAt, sentWall: at(sentAt).wall, breaksAtSend: 0, ...over };
}

/** The effect kinds in order, with the role changes spelt out: what the loop will do. */
function effects(list: readonly Effect[]): string[] {
  return list.map((e) => {
    switch (e.kind) {
      case 'role':
        return `role ${e.from}→${e.to}`;
      case 'arm_deadline':
        return `deadline ${e.at ?? 'none'}`;
      case 'log':
        return `log ${e.level}`;
      case 'barrier':
        return `barrier ${e.reason}`;
      case 'abort_work':
      case 'release':
      case 'release_after_work':
      case 'start_work':
      case 'abandon':
        return e.kind;
    }
  });
}

/** Freezes a state all the way down, so a decision that changed its input would throw or be caught by the JSON check. */
function frozen<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}

/** Runs a decision on a frozen state and checks the state it was given is unchanged. */
function pure<S, R>(state: S, decide: (s: S) => R): R {
  const before = JSON.stringify(state);
  const result = decide(frozen(state));
  assert.equal(JSON.stringify(state), before, 'the decision changed the state it was given');
  return result;
}

interface Row {
  name: string;
  state: ElectionState;
  decide: (s: ElectionState) => { state: ElectionState; effects: readonly Effect[]; delayMs?: number };
  kind: ElectionState['kind'];
  delayMs?: number;
  effects: string[];
  check?: (s: ElectionState) => void;
}

function runTable(rows: Row[]): void {
  for (const row of rows) {
    it(row.name, () => {
      const step = pure(row.state, row.decide);
      assert.equal(step.state.kind, row.kind);
      if (row.delayMs !== undefined) assert.equal(step.delayMs, row.delayMs);
      assert.deepEqual(effects(step.effects), row.effects);
      row.check?.(step.state);
    });
  }
}

describe('election decision: acquire replies', () => {
  runTable([
    {
      name: 'acquired in time: leads until sentAt + TTL − margin, renews one interval after sending, starts the work',
      state: initialState(rules),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(100, 'r0'), { kind: 'acquired', lease: { token: 7, ver: 'a7' } }, at(140)),
      kind: 'leading',
      delayMs: 100 + RENEW - 140,
      effects: ['deadline 1065', 'role unknown→active', 'start_work'],
      check: (s) => {
        assert.equal(s.kind === 'leading' && s.held.validUntil, 100 + TTL - timing.safetyMarginMs);
        assert.equal(s.memory.floor, 7);
        assert.equal(s.memory.lastToken, 7);
      },
    },
    {
      name: 'acquired, but the answer came at the deadline it granted: hands it back at once',
      state: standby(),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(100, 'r0'), { kind: 'acquired', lease: { token: 7, ver: 'a7' } }, at(100 + timing.leaseValidityMs)),
      kind: 'standby',
      delayMs: 0,
      effects: ['release'],
      check: (s) => assert.equal(s.memory.floor, 7, 'the token is learned even when not used'),
    },
    {
      name: 'acquired, but the host was suspended while the request was out (wall moved on, monotonic did not): hands it back at once',
      state: standby(),
      decide: (s) =>
        acquireAnswered(
          rules,
          s,
          sentAcquire(100, 'r0'),
          { kind: 'acquired', lease: { token: 7, ver: 'a7' } },
          at(140, { wall: at(140).wall + timing.safetyMarginMs + 1 }),
        ),
      kind: 'standby',
      delayMs: 0,
      effects: ['release'],
    },
    {
      name: 'acquired with the clocks agreeing up to the margin: leads, and its first deadline check measures from the send',
      state: standby(),
      decide: (s) =>
        acquireAnswered(
          rules,
          s,
          sentAcquire(100, 'r0'),
          { kind: 'acquired', lease: { token: 7, ver: 'a7' } },
          at(140, { wall: at(140).wall + timing.safetyMarginMs }),
        ),
      kind: 'leading',
      effects: ['deadline 1065', 'role standby→active', 'start_work'],
      check: (s) => assert.deepEqual(s.kind === 'leading' && s.lastClockCheck, { mono: 100, wall: at(100).wall }),
    },
    {
      name: 'held by another: waits one TTL from the arrival of the reply, looking at least every renew interval',
      state: initialState(rules),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(100), observed({}), at(130)),
      kind: 'standby',
      delayMs: RENEW,
      effects: ['role unknown→standby'],
      check: (s) => assert.deepEqual(s.memory.watch.current, { ver: 'r1', firstSeenAt: 130, waitMs: TTL }),
    },
    {
      name: 'held by another with a longer TTL: the wait is the longest TTL known',
      state: standby(),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), observed({ ttlMs: 5_000 }), at(10)),
      kind: 'standby',
      effects: [],
      check: (s) => {
        assert.equal(s.memory.watch.current?.waitMs, 5_000);
        assert.equal(s.memory.maxTtlSeen, 5_000);
      },
    },
    {
      name: 'our own newest leadership written on this connection, not held: abandons it',
      state: standby({ floor: 50, breaks: 0, breaksAtLastWrite: 0 }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), observed({ ours: true, instanceId: 'me' }), at(5)),
      kind: 'standby',
      effects: ['abandon'],
    },
    {
      name: 'our own record, but a break came after our last write (a restore may have brought it back): waits, frees nothing',
      state: standby({ floor: 50, breaks: 1, breaksAtLastWrite: 0 }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0, null, { breaksAtSend: 1 }), observed({ ours: true, instanceId: 'me' }), at(5)),
      kind: 'standby',
      effects: [],
    },
    {
      name: 'our own record older than a token we saw: waits, frees nothing',
      state: standby({ floor: 60, breaks: 0, breaksAtLastWrite: 0 }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), observed({ ours: true, instanceId: 'me' }), at(5)),
      kind: 'standby',
      effects: [],
    },
    {
      name: 'our own record while the leader work still ends: the lease stays held, nothing is freed',
      state: standby({ floor: 50, breaks: 0, breaksAtLastWrite: 0 }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), observed({ ours: true, instanceId: 'me' }), at(5, { workEnding: true })),
      kind: 'standby',
      delayMs: RENEW,
      effects: [],
    },
    {
      name: 'a free record first seen (it may be an older state come back): watched for a full TTL',
      state: standby(),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), observed({ state: 'free' }), at(5)),
      kind: 'standby',
      effects: [],
      check: (s) => assert.equal(s.memory.watch.current?.waitMs, TTL),
    },
    {
      name: 'a free record we watched the record change to: take it with the next call',
      state: standby({ watch: sawVersion(EMPTY_WATCH, 'r0', 0, TTL) }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(10), observed({ state: 'free' }), at(20)),
      kind: 'standby',
      delayMs: 0,
      effects: [],
      check: (s) => assert.equal(s.memory.watch.current?.waitMs, 0),
    },
    {
      name: 'freshly freed but still backing off after a resignation: waits for the back-off',
      state: standby({ watch: sawVersion(EMPTY_WATCH, 'r0', 0, TTL), backoffUntil: 200 }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(10), observed({ state: 'free' }), at(20)),
      kind: 'standby',
      delayMs: 200 - 20 + 1,
      effects: [],
    },
    {
      name: 'a handoff naming us, after watching the record change: take it at once',
      state: standby({ watch: sawVersion(EMPTY_WATCH, 'r0', 0, TTL) }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(10), observed({ state: 'handoff', instanceId: 'me' }), at(20)),
      kind: 'standby',
      delayMs: 0,
      effects: [],
    },
    {
      name: 'a handoff naming another replica: waited out like a held lease',
      state: standby({ watch: sawVersion(EMPTY_WATCH, 'r0', 0, TTL) }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(10), observed({ state: 'handoff', instanceId: 'other' }), at(20)),
      kind: 'standby',
      effects: [],
      check: (s) => assert.equal(s.memory.watch.current?.waitMs, TTL),
    },
    {
      name: 'a barrier: nobody leads until it has stood for its length; the newest token becomes the floor',
      state: initialState(rules),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), { kind: 'barrier', ver: 'b1', ms: 2_000, reason: 'data_loss', newest: 900 }, at(10)),
      kind: 'standby',
      delayMs: RENEW,
      effects: ['barrier data_loss', 'log warn', 'role unknown→standby'],
      check: (s) => {
        assert.equal(s.memory.floor, 900);
        assert.equal(s.memory.watch.current?.waitMs, 2_000);
      },
    },
    {
      name: 'something that is not a record, seen the first time: said once, replaced after a full TTL',
      state: standby(),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), { kind: 'foreign', ver: 'f1', detail: 'not a record', newest: 0 }, at(10)),
      kind: 'standby',
      effects: ['log error'],
    },
    {
      name: 'the same foreign value again: not said again',
      state: standby({ lastAcquireKind: 'foreign' }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), { kind: 'foreign', ver: 'f1', detail: 'not a record', newest: 0 }, at(10)),
      kind: 'standby',
      effects: [],
    },
    {
      name: 'a key of another Redis type: never overwritten, looked at every renew interval',
      state: standby(),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(0), { kind: 'anomaly', reason: 'wrong_type', detail: 'a hash' }, at(10)),
      kind: 'standby',
      delayMs: RENEW,
      effects: ['log error'],
    },
    {
      name: 'a reply naming a version replaced before the look was sent: Redis went back, everything is watched afresh',
      state: standby({ watch: sawVersion(sawVersion(EMPTY_WATCH, 'old', 0, TTL), 'new', 100, TTL) }),
      decide: (s) => acquireAnswered(rules, s, sentAcquire(200), observed({ ver: 'old' }), at(210)),
      kind: 'standby',
      effects: ['log warn'],
      check: (s) => assert.deepEqual(s.memory.watch.current, { ver: 'old', firstSeenAt: 210, waitMs: TTL }),
    },
  ]);
});

describe('election decision: what an acquire asks for', () => {
  const watched = sawVersion(EMPTY_WATCH, 'r1', 0, TTL);
  const cases: { name: string; state: ElectionState; now: Now; expectedVer: string | null; fresh: boolean }[] = [
    { name: 'a version that stood still for its wait', state: standby({ watch: watched, sawRecord: true }), now: at(TTL), expectedVer: 'r1', fresh: false },
    {
      name: 'one millisecond before that: only a look',
      state: standby({ watch: watched, sawRecord: true }),
      now: at(TTL - 1),
      expectedVer: null,
      fresh: false,
    },
    { name: 'during a back-off: only a look', state: standby({ watch: watched, backoffUntil: 2_000 }), now: at(1_500), expectedVer: null, fresh: false },
    { name: 'while the last leader work ends: only a look, never fresh', state: standby(), now: at(5, { workEnding: true }), expectedVer: null, fresh: false },
    { name: 'while handing over: only a look', state: standby({ watch: watched }), now: at(TTL, { handingOver: true }), expectedVer: null, fresh: false },
    { name: 'a replica that has seen nothing: fresh', state: initialState(rules), now: at(0), expectedVer: null, fresh: true },
    { name: 'after a break: not fresh', state: standby({ breaks: 1 }), now: at(0), expectedVer: null, fresh: false },
    { name: 'after seeing a token: not fresh', state: standby({ floor: 3 }), now: at(0), expectedVer: null, fresh: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const sent = pure(c.state, (s) => planAcquire(rules, s, c.now));
      assert.equal(sent.request.expectedVer, c.expectedVer);
      assert.equal(sent.request.fresh, c.fresh);
      assert.equal(sent.sentAt, c.now.mono);
    });
  }
  it('passes the highest token seen as the floor and the longest TTL known as the barrier length', () => {
    const sent = pure(standby({ floor: 77, maxTtlSeen: 4_000 }), (s) => planAcquire(rules, s, at(0)));
    assert.equal(sent.request.floor, 77);
    assert.equal(sent.request.barrierMs, 4_000);
  });
});

describe('election decision: acquires that got no answer', () => {
  runTable([
    {
      name: 'a timed-out takeover may have run: abandon what it may have taken',
      state: standby(),
      decide: (s) => acquireFailed(rules, s, sentAcquire(0, 'r1'), true),
      kind: 'standby',
      delayMs: RENEW,
      effects: ['abandon'],
    },
    {
      name: 'a timed-out look cannot have taken anything: nothing abandoned (our lease may have to stay held)',
      state: standby(),
      decide: (s) => acquireFailed(rules, s, sentAcquire(0, null), true),
      kind: 'standby',
      effects: [],
    },
    {
      name: 'a refused connection never reached Redis: nothing abandoned',
      state: initialState(rules),
      decide: (s) => acquireFailed(rules, s, sentAcquire(0, 'r1'), false),
      kind: 'standby',
      effects: ['role unknown→standby'],
    },
  ]);
});

describe('election decision: renewals', () => {
  const VALID = 965;
  const sent = (s: ElectionState, sentAt: number): RenewSent => ({ held: s.kind === 'leading' ? s.held : assert.fail('not leading'), sentAt, breaksAtSend: 0 });
  const renewed: RenewResult = { kind: 'renewed', lease: { token: 7, ver: 'n7' } };
  const held = leading(7, VALID);
  runTable([
    {
      name: 'renewed in time: the deadline moves to sentAt + TTL − margin; the next renewal one interval after sending',
      state: held,
      decide: (s) => renewAnswered(rules, s, sent(s, 300), renewed, at(320)),
      kind: 'leading',
      delayMs: 280,
      effects: [`deadline ${300 + VALID}`],
      check: (s) => assert.equal(s.kind === 'leading' && s.held.lease.ver, 'n7'),
    },
    {
      name: 'renewed, but the host was suspended while the renewal was out: steps down at once',
      state: { ...held, lastClockCheck: { mono: 300, wall: at(300).wall } },
      decide: (s) => renewAnswered(rules, s, sent(s, 300), renewed, at(320, { wall: at(320).wall + timing.safetyMarginMs + 1 })),
      kind: 'standby',
      delayMs: 0,
      effects: [`deadline ${300 + VALID}`, 'deadline none', 'abort_work', 'role active→standby'],
    },
    {
      name: 'renewed, but the answer came after the old deadline: steps down, the work is told',
      state: held,
      decide: (s) => renewAnswered(rules, s, sent(s, 300), renewed, at(VALID)),
      kind: 'standby',
      delayMs: 0,
      effects: ['deadline none', 'abort_work', 'role active→standby'],
      check: (s) => assert.equal(s.memory.watch.current?.waitMs, 0, 'the version it wrote is ours to replace'),
    },
    {
      name: 'lost to another holder: steps down and learns its token',
      state: held,
      decide: (s) => renewAnswered(rules, s, sent(s, 300), { kind: 'lost', found: 'held', holder: { instanceId: 'other', token: 9 } }, at(310)),
      kind: 'standby',
      delayMs: 0,
      effects: ['deadline none', 'abort_work', 'role active→standby'],
      check: (s) => assert.equal(s.memory.floor, 9),
    },
    {
      name: 'an answer for a leadership already ended (a resignation while waiting): changes nothing',
      state: standby(),
      decide: (s) => renewAnswered(rules, s, { held: held.held, sentAt: 300, breaksAtSend: 0 }, renewed, at(310)),
      kind: 'standby',
      delayMs: 0,
      effects: [],
    },
    {
      name: 'no answer before the deadline: keeps the lease and retries soon',
      state: held,
      decide: (s) => renewFailed(rules, s, sent(s, 300), true, at(VALID - 1)),
      kind: 'leading',
      delayMs: timing.renewRetryMs,
      effects: [],
      check: (s) => assert.equal(s.memory.breaksAtLastWrite, 0, 'a timed-out renewal may have written'),
    },
    {
      name: 'no answer and the deadline passed: steps down',
      state: held,
      decide: (s) => renewFailed(rules, s, sent(s, 300), false, at(VALID)),
      kind: 'standby',
      delayMs: RENEW,
      effects: ['deadline none', 'abort_work', 'role active→standby'],
    },
  ]);
});

describe('election decision: the deadline', () => {
  const held = leading(7, 965);
  runTable([
    {
      name: 'one millisecond before sentAt + TTL − margin: still ACTIVE',
      state: held,
      decide: (s) => judgeDeadline(rules, s, at(964)),
      kind: 'leading',
      effects: [],
    },
    {
      name: 'at sentAt + TTL − margin exactly: STANDBY',
      state: held,
      decide: (s) => judgeDeadline(rules, s, at(965)),
      kind: 'standby',
      effects: ['deadline none', 'abort_work', 'role active→standby'],
    },
    {
      name: 'the wall clock moved more than the monotonic clock plus the margin (a host suspend): steps down at once',
      state: { ...held, lastClockCheck: { mono: 100, wall: 1_700_000_000_100 } },
      decide: (s) => judgeDeadline(rules, s, { ...at(200), wall: 1_700_000_000_200 + timing.safetyMarginMs + 1 }),
      kind: 'standby',
      effects: ['deadline none', 'abort_work', 'role active→standby'],
    },
    {
      name: 'the wall clock ahead by no more than the margin: still ACTIVE',
      state: { ...held, lastClockCheck: { mono: 100, wall: 1_700_000_000_100 } },
      decide: (s) => judgeDeadline(rules, s, { ...at(200), wall: 1_700_000_000_200 + timing.safetyMarginMs }),
      kind: 'leading',
      effects: [],
    },
  ]);
});

describe('election decision: announcements, breaks and resignations', () => {
  const ann = (over: Partial<Announcement>): Announcement => ({ event: 'renewed', ver: 'x1', token: 40, ttlMs: TTL, instanceId: 'other', ...over });
  it('a release heard: no wait, look at once', () => {
    const step = pure(standby(), (s) => announced(rules, s, ann({ event: 'released' }), at(50)));
    assert.deepEqual(step.next, { kind: 'kick', why: 'a holder released the lease' });
    assert.equal(step.state.memory.watch.current?.waitMs, 0);
  });
  it('a handoff naming us: no wait, look at once', () => {
    const step = pure(standby(), (s) => announced(rules, s, ann({ event: 'handoff', instanceId: 'me' }), at(50)));
    assert.deepEqual(step.next, { kind: 'kick', why: 'the lease was handed over to us' });
    assert.equal(step.state.memory.watch.current?.waitMs, 0);
  });
  it('a renewal by another: the wait restarts from its arrival, and the next look is no later than its end', () => {
    const step = pure(standby({ backoffUntil: 0 }), (s) => announced(rules, s, ann({}), at(50)));
    assert.deepEqual(step.state.memory.watch.current, { ver: 'x1', firstSeenAt: 50, waitMs: TTL });
    assert.deepEqual(step.next, { kind: 'not_later_than', ms: RENEW });
  });
  it('while leading: learns the token and TTL, changes nothing else', () => {
    const held = leading(7, 965);
    const step = pure(held, (s) => announced(rules, s, ann({ token: 99, ttlMs: 3_000 }), at(50)));
    assert.deepEqual(step.state, { ...held, memory: { ...held.memory, floor: 99, maxTtlSeen: 3_000, sawRecord: true } });
    assert.deepEqual(step.effects, []);
    assert.deepEqual(step.next, { kind: 'keep' });
  });
  it('a break forgets every wait (Redis may have come back with older data) and is counted', () => {
    const step = pure(standby({ watch: sawVersion(EMPTY_WATCH, 'r1', 0, 0) }), (s) => disconnected(rules, s));
    assert.equal(step.state.memory.watch.current, null);
    assert.equal(step.state.memory.breaks, 1);
  });
  it('resignations back off one renew interval, doubling while they repeat, never beyond the TTL', () => {
    let state: ElectionState = leading(7, 965);
    const backoffs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const step: EventStep = pure(state, (s) => resigned(rules, s, 7 + i, 'test', at(0)));
      assert.deepEqual(effects(step.effects), ['deadline none', 'abort_work', 'role active→standby', 'release_after_work']);
      backoffs.push(step.next.kind === 'in' ? step.next.ms : -1);
      state = leading(8 + i, 965, step.state.memory);
    }
    assert.deepEqual(backoffs, [RENEW, 2 * RENEW, TTL, TTL, TTL]);
  });
  it('a resignation of a leadership no longer held changes nothing', () => {
    const held = leading(8, 965, { resignStreak: 2, backoffUntil: 40 });
    const step = pure(held, (s) => resigned(rules, s, 7, 'late', at(0)));
    assert.deepEqual(step.state, held);
    assert.deepEqual(step.effects, []);
    assert.deepEqual(step.next, { kind: 'keep' });
  });
});
