import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EMPTY_WATCH, eligibleAt, eligibleVer, sawVersion, type VersionWatch } from '../../src/ha/watch';

/** Threads one watch value through the pure functions, so each case reads as a sequence of sightings. */
class Watching {
  w: VersionWatch = EMPTY_WATCH;
  saw(ver: string, at: number, waitMs: number): void {
    this.w = sawVersion(this.w, ver, at, waitMs);
  }
  reset(): void {
    this.w = EMPTY_WATCH;
  }
  eligibleVer(now: number): string | null {
    return eligibleVer(this.w, now);
  }
  eligibleAt(): number | null {
    return eligibleAt(this.w);
  }
  get watched(): VersionWatch['current'] {
    return this.w.current;
  }
}

describe('version watch', () => {
  it('makes a version eligible once it stood still for its wait, and restarts the wait for a new one', () => {
    const w = new Watching();
    w.saw('a1', 100, 1_000);
    assert.equal(w.eligibleVer(1_099), null);
    assert.equal(w.eligibleVer(1_100), 'a1');
    w.saw('a1', 900, 1_000);
    assert.equal(w.eligibleAt(), 1_100, 'seeing the same version again keeps its first sighting');
    w.saw('b2', 1_050, 1_000);
    assert.equal(w.eligibleVer(1_100), null);
    assert.equal(w.eligibleAt(), 2_050);
  });

  it('ignores a late reading of a version already superseded, so a reply older than an announcement cannot restart the wait', () => {
    const w = new Watching();
    w.saw('v1', 0, 1_000);
    w.saw('v2', 300, 1_000); // the renewal's announcement
    w.saw('v1', 310, 1_000); // a look sent before the renewal, answered after its announcement
    assert.equal(w.watched?.ver, 'v2');
    assert.equal(w.eligibleAt(), 1_300);
  });

  it('never lets a later, shorter wait shorten a version, except a heard release (0)', () => {
    const w = new Watching();
    w.saw('v1', 0, 5_000);
    w.saw('v1', 10, 1_000);
    assert.equal(w.eligibleAt(), 5_000);
    w.saw('v1', 20, 0);
    assert.equal(w.eligibleVer(20), 'v1');
  });

  it('forgets everything after a reset, history included', () => {
    const w = new Watching();
    w.saw('v1', 0, 1_000);
    w.saw('v2', 10, 1_000);
    w.reset();
    assert.equal(w.eligibleVer(1e9), null);
    w.saw('v1', 2_000, 1_000);
    assert.equal(w.watched?.ver, 'v1', 'after a reset an old version is a new sighting (a rollback may have brought it back)');
    assert.equal(w.eligibleAt(), 3_000);
  });

  it('never changes the watch it is given: a decision can be replayed from the same state', () => {
    const w1 = sawVersion(EMPTY_WATCH, 'v1', 0, 1_000);
    const frozen = JSON.stringify(w1);
    const w2 = sawVersion(w1, 'v2', 10, 1_000);
    sawVersion(w1, 'v1', 20, 0);
    assert.equal(JSON.stringify(w1), frozen);
    assert.deepEqual(w2.superseded, ['v1']);
    assert.equal(JSON.stringify(EMPTY_WATCH), '{"current":null,"superseded":[]}');
  });
});
