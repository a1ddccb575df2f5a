import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyze,
  compareIds,
  exitCodeFor,
  findStaleWrites,
  formatReport,
  mergeSnapshots,
  noLeaderGaps,
  type FaultRecord,
  type RunRecords,
  type StreamEntry,
} from '../../tools/chaos/checker';
import { findOverlaps, leadershipIntervals, type IncarnationRecord, type RoleRecord } from '../../tools/kit/leadership';

/*
 * The chaos checker on synthetic records: clean runs pass, and every kind of violation it exists
 * to catch (overlapping leaderships, token regressions, writes outside the writer's leadership,
 * writes from no known leadership) is caught. Times are ms on a made-up monotonic clock.
 */

const toActive = (token: number, monoMs: number): RoleRecord => ({ from: 'standby', to: 'active', token, monoMs, validUntilMonoMs: null });
const toStandby = (token: number, monoMs: number, validUntilMonoMs: number = monoMs): RoleRecord => ({
  from: 'active',
  to: 'standby',
  token,
  monoMs,
  validUntilMonoMs,
});

function inc(instance: string, roleChanges: RoleRecord[], end: IncarnationRecord['end'] = { kind: 'running' }, incarnation = 0): IncarnationRecord {
  return { instance, incarnation, startedMonoMs: 0, end, roleChanges, rejectedWrites: 0 };
}

let idSeq = 0;
function entry(instance: string, token: number, monoMs: number, epoch = 0, id?: string): StreamEntry {
  idSeq += 1;
  return { id: id ?? `${1000 + idSeq}-0`, epoch, token, instance, seq: idSeq, monoMs, wallMs: 0 };
}

/** Writes every `every` ms in [from, to] as instance/token. */
function writes(instance: string, token: number, from: number, to: number, every = 10): StreamEntry[] {
  const out: StreamEntry[] = [];
  for (let t = from; t <= to; t += every) out.push(entry(instance, token, t));
  return out;
}

function run(over: Partial<RunRecords>): RunRecords {
  return {
    seed: 1,
    replicas: 2,
    ttlMs: 100,
    renewMs: 25,
    startMonoMs: 0,
    endMonoMs: 1_000,
    entries: [],
    incarnations: [],
    faults: [],
    harnessErrors: [],
    ...over,
  };
}

describe('chaos checker: leadership intervals', () => {
  it('runs from to:active to the record that ends it, or to valid_until when the record came late', () => {
    const ivs = leadershipIntervals(
      [
        // A normal step-down: the record is the end.
        inc('a', [toActive(5, 10), toStandby(5, 90, 95)]),
        // A zombie: paused at ~120, wrote its record at 400 on waking, valid only until 150.
        inc('b', [toActive(6, 100), toStandby(6, 400, 150)]),
      ],
      1_000,
    );
    assert.deepEqual(
      ivs.map((i) => [i.instance, i.token, i.startMonoMs, i.endMonoMs, i.endedBy]),
      [
        ['a', 5, 10, 90, 'record'],
        ['b', 6, 100, 150, 'valid-until'],
      ],
    );
  });

  it('ends at the kill time for a SIGKILLed leader, at the end of observation for one still leading', () => {
    const ivs = leadershipIntervals(
      [
        inc('a', [toActive(5, 10)], { kind: 'killed', monoMs: 300 }),
        inc('a', [toActive(7, 500)], { kind: 'running' }, 1),
        inc('b', [toActive(6, 320), toStandby(6, 450)], { kind: 'exited', monoMs: 460, code: 1 }),
      ],
      900,
    );
    assert.deepEqual(
      ivs.map((i) => [i.instance, i.incarnation, i.token, i.startMonoMs, i.endMonoMs, i.endedBy]),
      [
        ['a', 0, 5, 10, 300, 'killed'],
        ['b', 0, 6, 320, 450, 'record'],
        ['a', 1, 7, 500, 900, 'end-of-run'],
      ],
    );
  });

  it('ignores role changes that never touch active', () => {
    const ivs = leadershipIntervals([inc('a', [{ from: 'unknown', to: 'standby', token: null, monoMs: 5, validUntilMonoMs: null }])], 100);
    assert.deepEqual(ivs, []);
  });
});

describe('chaos checker: a clean run', () => {
  it('a handover with a gap: no overlap, no stale write, availability and the longest gap measured', () => {
    const rec = run({
      endMonoMs: 400,
      incarnations: [inc('a', [toActive(5, 0), toStandby(5, 210, 200)]), inc('b', [toActive(6, 250)])],
      entries: [...writes('a', 5, 0, 200), ...writes('b', 6, 250, 400)],
      faults: [{ kind: 'zombie', target: 'a', startMonoMs: 150, endMonoMs: 260, detail: '' }],
    });
    const r = analyze(rec);
    assert.equal(r.safe, true);
    assert.equal(r.verdict, 'PASS');
    assert.equal(exitCodeFor(r), 0);
    assert.deepEqual(r.overlaps, []);
    assert.deepEqual(r.staleWrites, []);
    assert.equal(r.leaderships, 2);
    assert.equal(r.leadershipsWithWork, 2);
    assert.equal(r.acceptedWrites, 21 + 16);
    assert.deepEqual(r.acceptedByInstance, { a: 21, b: 16 });
    assert.equal(r.longestNoLeader?.ms, 50);
    assert.deepEqual(r.longestNoLeader?.faults, ['zombie']);
    assert.equal(r.availabilityWindowMs, 400);
    assert.equal(r.availabilityPct, 87.5);
    assert.equal(r.longestWriteGapMs, 50);
    assert.equal(r.faultsByKind.zombie, 1);
    assert.equal(r.faultsByKind.kill, 0);
    assert.equal(r.faultsTotal, 1);
  });

  it('two ACTIVE replicas at once are a violation even when one of them did no accepted work', () => {
    const ivs = leadershipIntervals([inc('a', [toActive(5, 0), toStandby(5, 300)]), inc('b', [toActive(6, 100), toStandby(6, 400)])], 500);
    const stale = findStaleWrites(writes('b', 6, 100, 400), ivs);
    assert.deepEqual(stale, [], 'the fence kept the idle one out of the stream');
    const overlaps = findOverlaps(ivs);
    assert.equal(overlaps.length, 1);
    assert.equal(overlaps[0]?.overlapMs, 200);
  });

  it('back-to-back leaderships (one ends exactly when the next starts) do not overlap', () => {
    const rec = run({
      incarnations: [inc('a', [toActive(5, 0), toStandby(5, 100)]), inc('b', [toActive(6, 100)])],
      entries: [...writes('a', 5, 0, 100), ...writes('b', 6, 100, 1_000)],
    });
    const r = analyze(rec);
    assert.deepEqual(r.overlaps, []);
    assert.deepEqual(r.staleWrites, []);
    assert.equal(r.longestNoLeader?.ms, 0);
    assert.equal(r.availabilityPct, 100);
  });
});

describe('chaos checker: violations are caught', () => {
  it('two leaderships with accepted work sharing time are an overlap (exit 1)', () => {
    const rec = run({
      incarnations: [inc('a', [toActive(5, 0), toStandby(5, 300)]), inc('b', [toActive(6, 200), toStandby(6, 500)])],
      // a keeps writing until 300 with token 5, b writes from 200 with 6: both accepted (a broken fence).
      entries: [...writes('a', 5, 0, 190), ...writes('b', 6, 200, 500)],
    });
    const r = analyze(rec);
    assert.equal(r.overlaps.length, 1);
    const o = r.overlaps[0];
    assert.equal(o?.a.instance, 'a');
    assert.equal(o?.b.instance, 'b');
    assert.equal(o?.overlapMs, 100);
    assert.equal(r.safe, false);
    assert.equal(r.verdict, 'FAIL: safety violated');
    assert.equal(exitCodeFor(r), 1);
    assert.match(formatReport(r, 0), /overlapping leaderships: +1 /);
    assert.match(formatReport(r, 0), /Verdict: FAIL: safety violated/);
  });

  it('a killed leader whose successor started before the kill is an overlap', () => {
    const rec = run({
      incarnations: [inc('a', [toActive(5, 0)], { kind: 'killed', monoMs: 400 }), inc('b', [toActive(6, 350)])],
      entries: [...writes('a', 5, 0, 300), ...writes('b', 6, 350, 600)],
    });
    const r = analyze(rec);
    assert.equal(r.overlaps.length, 1);
    assert.equal(r.overlaps[0]?.overlapMs, 50);
    assert.equal(r.overlaps[0]?.a.endedBy, 'killed');
  });

  it('a token lower than one accepted before it in stream order is a stale write', () => {
    const rec = run({
      incarnations: [inc('a', [toActive(5, 0), toStandby(5, 100)]), inc('b', [toActive(6, 100), toStandby(6, 200)])],
      entries: [entry('a', 5, 10), entry('b', 6, 110), entry('a', 5, 90), entry('b', 6, 120)],
    });
    const r = analyze(rec);
    // The a#5 write at mono 90 lies inside a's leadership, but it landed after b#6 was accepted.
    assert.equal(r.staleWrites.length, 1);
    assert.equal(r.staleWrites[0]?.entry.monoMs, 90);
    assert.match(r.staleWrites[0]?.reason ?? '', /token 5 is lower than token 6/);
    assert.equal(exitCodeFor(r), 1);
  });

  it('the token order holds across a Redis data loss (a new epoch starts an empty stream)', () => {
    const before = [entry('b', 6, 110, 0, '5000-0')];
    const after = [entry('a', 5, 90, 1, '4000-0')]; // a lower id too: the epoch orders first
    const merged = mergeSnapshots([before, after]);
    assert.deepEqual(
      merged.map((e) => e.token),
      [6, 5],
    );
    const ivs = leadershipIntervals([inc('a', [toActive(5, 0), toStandby(5, 100)]), inc('b', [toActive(6, 100)])], 1_000);
    const stale = findStaleWrites(merged, ivs);
    assert.equal(stale.length, 1);
    assert.match(stale[0]?.reason ?? '', /lower than token 6/);
  });

  it('a zombie write: sent after its own leadership ended (valid_until), even with nobody newer yet', () => {
    const rec = run({
      // a paused at ~100, valid until 120, woke at 400 and (wrongly) wrote before stepping down.
      incarnations: [inc('a', [toActive(5, 0), toStandby(5, 401, 120)])],
      entries: [...writes('a', 5, 0, 100), entry('a', 5, 400)],
    });
    const r = analyze(rec);
    assert.equal(r.staleWrites.length, 1);
    assert.match(r.staleWrites[0]?.reason ?? '', /280\.000 ms after it ended \(valid-until\)/);
    assert.equal(r.safe, false);
  });

  it('a write sent before its leadership began, or by a leadership nobody reported, is stale', () => {
    const ivs = leadershipIntervals([inc('a', [toActive(5, 100)])], 1_000);
    const stale = findStaleWrites([entry('a', 5, 50), entry('a', 5, 150), entry('c', 9, 200)], ivs);
    assert.equal(stale.length, 2);
    assert.match(stale[0]?.reason ?? '', /50\.000 ms before it began/);
    assert.match(stale[1]?.reason ?? '', /no replica reported leading as c with token 9/);
  });

  it('a write by a killed leader after its kill time is stale', () => {
    const rec = run({
      incarnations: [inc('a', [toActive(5, 0)], { kind: 'killed', monoMs: 100 })],
      entries: [entry('a', 5, 50), entry('a', 5, 150)],
    });
    assert.equal(analyze(rec).staleWrites.length, 1);
  });

  it('the same token on two instances is two leaderships: each write is judged by its own writer', () => {
    // After a Redis restart that lost an unacknowledged INCR, a token can be handed out twice.
    const ivs = leadershipIntervals([inc('a', [toActive(5, 0), toStandby(5, 100)]), inc('b', [toActive(5, 200), toStandby(5, 300)])], 1_000);
    assert.deepEqual(findStaleWrites([entry('a', 5, 50), entry('b', 5, 250)], ivs), []);
    assert.equal(findStaleWrites([entry('a', 5, 50), entry('a', 5, 250)], ivs).length, 1);
  });
});

describe('chaos checker: merging and gaps', () => {
  it('merges overlapping snapshots without duplicates, in (epoch, id) order with numeric ids', () => {
    const e1 = entry('a', 5, 1, 0, '9-0');
    const e2 = entry('a', 5, 2, 0, '10-0');
    const e3 = entry('a', 5, 3, 0, '10-1');
    const e4 = entry('b', 6, 4, 1, '2-0');
    const merged = mergeSnapshots([[e1, e2], [e2, e3], [e3], [e4]]);
    assert.deepEqual(
      merged.map((e) => e.id),
      ['9-0', '10-0', '10-1', '2-0'],
    );
    assert.ok(compareIds('9-5', '10-0') < 0);
    assert.ok(compareIds('10-2', '10-10') < 0);
  });

  it('finds the gaps in the union of intervals', () => {
    const ivs = leadershipIntervals(
      [inc('a', [toActive(1, 0), toStandby(1, 100)]), inc('b', [toActive(2, 150), toStandby(2, 300)]), inc('c', [toActive(3, 250), toStandby(3, 400)])],
      500,
    );
    assert.deepEqual(noLeaderGaps(ivs, 0, 500), [
      { start: 100, end: 150 },
      { start: 400, end: 500 },
    ]);
    const r = analyze(run({ endMonoMs: 500, incarnations: [inc('a', [toActive(1, 0), toStandby(1, 100)]), inc('b', [toActive(2, 150), toStandby(2, 300)])] }));
    assert.equal(r.longestNoLeader?.ms, 200);
    assert.equal(r.availabilityPct, 50);
  });

  it('with no leadership at all there is no availability figure', () => {
    const r = analyze(run({ incarnations: [inc('a', [])] }));
    assert.equal(r.availabilityPct, null);
    assert.equal(r.longestNoLeader, null);
    assert.match(formatReport(r, 0), /no replica ever became ACTIVE/);
  });
});

describe('chaos checker: verdict and exit code', () => {
  it('a harness error or a replica that exited by itself fails the run with exit 2 when it was safe', () => {
    const crashed = analyze(run({ incarnations: [inc('a', [toActive(5, 0)], { kind: 'exited', monoMs: 50, code: 1 })] }));
    assert.equal(crashed.safe, true);
    assert.deepEqual(crashed.unexpectedExits, ['a (incarnation 0) exited by itself with code 1']);
    assert.equal(crashed.verdict, 'FAIL: harness error');
    assert.equal(exitCodeFor(crashed), 2);
    const broken = analyze(run({ harnessErrors: ['harness: Redis did not come back'] }));
    assert.equal(exitCodeFor(broken), 2);
    assert.match(formatReport(broken, 0), /Harness errors\n {2}harness: Redis did not come back/);
  });

  it('a safety violation wins over a harness error: exit 1', () => {
    const r = analyze(
      run({
        incarnations: [inc('a', [toActive(5, 0)])],
        entries: [entry('a', 4, 10)],
        harnessErrors: ['something else'],
      }),
    );
    assert.equal(exitCodeFor(r), 1);
  });

  it('the report names every fault kind and its count', () => {
    const faults: FaultRecord[] = [
      { kind: 'kill', target: 'a', startMonoMs: 10, endMonoMs: 20, detail: 'x' },
      { kind: 'kill', target: 'b', startMonoMs: 30, endMonoMs: 40, detail: 'y' },
      { kind: 'redis-wipe', target: null, startMonoMs: 50, endMonoMs: 60, detail: 'z' },
    ];
    const text = formatReport(analyze(run({ faults })), 0);
    assert.match(text, /Faults injected: 3/);
    assert.match(text, /kill +2 /);
    assert.match(text, /redis-wipe +1 /);
    assert.match(text, /partition +0 /);
    assert.match(text, /0\.050s \+0\.01s {2}redis-wipe/);
  });
});
