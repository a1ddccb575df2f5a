import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { LeaderElector } from '../../src/ha/elector';
import type { LeaderContext, Role } from '../../src/ha/role';
import { leaseTiming } from '../../src/ha/timing';
import { FakeTime, type ProcessClock } from '../support/fake-clock';
import { FakeLeaseStore, FakeLock, formatRecord } from '../support/fake-lock';

const silent = pino({ level: 'silent' });
const TTL = 1_000;
const RENEW = 300;
const timing = leaseTiming(TTL, RENEW);

interface Sim {
  time: FakeTime;
  store: FakeLeaseStore;
  replicas: SimReplica[];
  /** Every leadership's start, in the order they began. */
  starts: { at: number; id: string; token: number }[];
}

interface SimReplica {
  id: string;
  clock: ProcessClock;
  lock: FakeLock;
  elector: LeaderElector;
  transitions: [Role, Role][];
  contexts: LeaderContext[];
}

/** A store that has seen GRINDER before (a free record, token 100) unless `fresh`: a Redis that never did, or lost its data. */
function simulate(n: number, opts: { fresh?: boolean; work?: (ctx: LeaderContext, id: string) => Promise<void> | void } = {}): Sim {
  const time = new FakeTime();
  const store = new FakeLeaseStore(time);
  if (!opts.fresh) store.setFree(100, TTL);
  const network = time.forProcess();
  const starts: Sim['starts'] = [];
  const replicas = Array.from({ length: n }, (_, i): SimReplica => {
    const id = `r${i}`;
    const clock = time.forProcess();
    const lock = new FakeLock(store, id, `a${i}`, (fn, ms) => network.setTimeout(fn, ms));
    lock.ttlMs = TTL;
    const transitions: [Role, Role][] = [];
    const contexts: LeaderContext[] = [];
    const elector = new LeaderElector({
      instanceId: id,
      timing,
      lock,
      clock,
      log: silent,
      onTransition: (from, to) => transitions.push([from, to]),
    });
    elector.onLeading(async (ctx) => {
      contexts.push(ctx);
      starts.push({ at: time.now(), id, token: ctx.token });
      if (opts.work) return opts.work(ctx, id);
      await waitAbort(ctx);
    });
    return { id, clock, lock, elector, transitions, contexts };
  });
  return { time, store, replicas, starts };
}

/** Every leadership has a token greater than all that began before it. */
function assertTokensIncrease(sim: Sim): void {
  for (let i = 1; i < sim.starts.length; i++) {
    const prev = sim.starts[i - 1];
    const cur = sim.starts[i];
    assert.ok(prev && cur && cur.token > prev.token, `token ${cur?.token} (${cur?.id} at ${cur?.at}) is not above ${prev?.token} (${prev?.id} at ${prev?.at})`);
  }
}

/**
 * Starts `starting` (default: every replica) and advances until one of them is ACTIVE. A free
 * record seen for the first time is watched for one TTL like any other version: it may be an older
 * state come back, so nobody takes it at first sight.
 */
async function firstLeader(sim: Sim, starting: SimReplica[] = sim.replicas): Promise<SimReplica> {
  for (const r of starting) r.elector.start();
  for (let t = 0; t <= 2 * TTL; t++) {
    const leader = starting.find((r) => r.elector.currentRole() === 'active');
    if (leader) return leader;
    await sim.time.advance(1);
  }
  assert.fail('nobody led within 2 TTL of the start');
}

/** Two replicas: a starts first and leads, b starts next and stands by. */
async function leaderAndStandby(): Promise<{ sim: Sim; a: SimReplica; b: SimReplica }> {
  const sim = simulate(2);
  const [a, b] = sim.replicas as [SimReplica, SimReplica];
  await firstLeader(sim, [a]);
  await sim.time.advance(1);
  b.elector.start();
  await sim.time.advance(1);
  return { sim, a, b };
}

function roles(sim: Sim): Role[] {
  return sim.replicas.map((r) => r.elector.currentRole());
}

/** Asks only replicas that are running: a paused process cannot answer anybody. */
function assertAtMostOneActive(sim: Sim): void {
  const active = sim.replicas.filter((r) => !r.clock.paused && r.elector.currentRole() === 'active');
  assert.ok(active.length <= 1, `two leaders at t=${sim.time.now()}: ${active.map((r) => r.id).join(', ')}`);
}

describe('LeaderElector', () => {
  it('is unknown before its first attempt, then exactly one of two replicas becomes ACTIVE', async () => {
    const sim = simulate(2);
    assert.deepEqual(roles(sim), ['unknown', 'unknown']);
    for (const r of sim.replicas) r.elector.start();
    await sim.time.advance(1);
    assert.deepEqual(roles(sim), ['standby', 'standby'], 'a free record seen for the first time is watched for one TTL');
    await sim.time.advanceChecking(TTL + RENEW, 1, () => assertAtMostOneActive(sim));
    assert.deepEqual(roles(sim).sort(), ['active', 'standby']);
    const leader = sim.replicas.find((r) => r.elector.currentRole() === 'active');
    assert.ok(leader);
    assert.equal(leader.contexts.length, 1, 'leader work started once');
    assert.equal(leader.contexts[0]?.token, 101);
    assert.equal(leader.elector.snapshot().fencingToken, 101);
  });

  it('renews every renew interval and stays ACTIVE while renewals succeed', async () => {
    const sim = simulate(2);
    const leader = await firstLeader(sim);
    await sim.time.advance(1);
    leader.lock.calls.length = 0;
    const transitions = leader.transitions.length;
    await sim.time.advanceChecking(10 * RENEW, 10, () => assertAtMostOneActive(sim));
    assert.equal(leader.lock.calls.filter((c) => c === 'renew').length, 10);
    assert.equal(leader.elector.currentRole(), 'active');
    assert.equal(leader.transitions.length, transitions, 'no role change while renewals succeed');
  });

  it('steps down by its own clock at sentAt + TTL - margin when Redis stops answering, and the standby takes over only after expiry', async () => {
    const { sim, a, b } = await leaderAndStandby();
    assert.equal(a.elector.currentRole(), 'active');
    const lastOk = sim.time.now() - 2; // a acquired at t0 (sent at t0), its last successful write
    a.lock.mode = 'down';
    const signal = a.contexts[0]?.signal;
    assert.ok(signal);
    // Exactly: ACTIVE up to the moment before sentAt + TTL - margin, STANDBY from then on, whatever
    // its failed renewals did meanwhile; the standby not before the lease's end.
    const deadline = lastOk + timing.leaseValidityMs;
    await sim.time.advanceChecking(TTL + RENEW, 1, () => {
      const now = sim.time.now();
      assert.equal(a.elector.currentRole(), now < deadline ? 'active' : 'standby', `a at t=${now} (deadline ${deadline})`);
      if (now < lastOk + TTL) assert.equal(b.elector.currentRole(), 'standby', `b at t=${now}, before the lease's end`);
    });
    assert.equal(a.elector.currentRole(), 'standby');
    assert.ok(signal.aborted, 'leader work was told to stop');
    assert.equal(b.elector.currentRole(), 'active', 'the standby took over once the lease expired');
    assert.deepEqual(a.transitions.at(-1), ['active', 'standby']);
  });

  it('never answers ACTIVE after a pause longer than the lease, not even to the first question after waking', async () => {
    const { sim, a, b } = await leaderAndStandby();
    assert.equal(a.elector.currentRole(), 'active');
    const signal = a.contexts[0]?.signal;
    a.clock.paused = true; // SIGSTOP: no timers, no renewals
    await sim.time.advanceChecking(3 * TTL, 5, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'active');
    // SIGCONT: before any timer of a's has run, somebody asks.
    assert.equal(signal?.aborted, false, 'the signal has not fired yet: nothing ran while paused');
    assert.equal(a.elector.currentRole(), 'standby');
    assert.equal(signal?.aborted, true, 'asking fired the signal');
    assert.equal(a.contexts[0]?.isLeader(), false);
    a.clock.paused = false;
    await sim.time.advance(10 * RENEW);
    assert.deepEqual(roles(sim), ['standby', 'active']);
  });

  it('keeps the lease through a renew timeout that recovers before the deadline', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    a.lock.mode = 'timeout';
    await sim.time.advance(RENEW + 250); // one renew timed out
    assert.equal(a.elector.currentRole(), 'active');
    a.lock.mode = 'ok';
    await sim.time.advance(timing.renewRetryMs + 10);
    assert.equal(a.elector.currentRole(), 'active');
    await sim.time.advance(5 * TTL);
    assert.equal(a.elector.currentRole(), 'active');
    assert.deepEqual(
      a.transitions.filter(([from]) => from === 'active'),
      [],
      'no flapping',
    );
  });

  it('a standby whose acquires run in Redis but whose replies time out does not keep everyone out', async () => {
    const sim = simulate(2);
    const [slow, healthy] = sim.replicas as [SimReplica, SimReplica];
    slow.lock.mode = 'late';
    slow.elector.start();
    await sim.time.advance(1);
    healthy.elector.start();
    await sim.time.advanceChecking(3 * TTL, 5, () => assertAtMostOneActive(sim));
    assert.equal(slow.elector.currentRole(), 'standby');
    assert.equal(healthy.elector.currentRole(), 'active', 'the healthy replica leads although the slow one keeps acquiring');
    assert.ok(slow.lock.calls.includes('abandon'), 'the slow replica handed back what its late acquires got');
  });

  it('steps down at once when its lease was taken over', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    sim.store.setHeld(999, 'intruder', TTL);
    await sim.time.advance(RENEW);
    assert.equal(a.elector.currentRole(), 'standby');
    assert.equal(a.contexts[0]?.signal.aborted, true);
    assert.deepEqual(a.elector.snapshot().holder, 'intruder');
  });

  it('replaces a string that is not a lease record only after it stood still for the TTL, and never overwrites another Redis type', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    sim.store.raw = 'not a lease';
    a.elector.start();
    await sim.time.advanceChecking(TTL - 5, 5, () => assert.equal(a.elector.currentRole(), 'standby'));
    await sim.time.advance(RENEW + 10);
    assert.equal(a.elector.currentRole(), 'active', 'the garbage was replaced');
    await a.elector.stop();

    const sim2 = simulate(1);
    const [b] = sim2.replicas as [SimReplica];
    sim2.store.keyType = 'hash';
    b.elector.start();
    await sim2.time.advance(10 * TTL);
    assert.equal(b.elector.currentRole(), 'standby', "a hash at the lock key is somebody else's data");
    assert.equal(b.elector.snapshot().leaseState, 'anomaly');
    sim2.store.keyType = 'string';
    sim2.store.raw = null;
    await sim2.time.advance(TTL + 2 * RENEW);
    assert.equal(b.elector.currentRole(), 'active', 'once the key is gone: a barrier, then a leader');
  });

  it('waits one full TTL after Redis lost its data before anybody leads (lock-delay barrier)', async () => {
    const sim = simulate(2, { fresh: true });
    for (const r of sim.replicas) r.elector.start();
    await sim.time.advanceChecking(TTL - 10, 5, () => assert.deepEqual(roles(sim), ['standby', 'standby']));
    await sim.time.advance(20);
    assert.deepEqual(roles(sim).sort(), ['active', 'standby']);
  });

  it('takes a dead holder over one TTL after its last renewal was announced, not at the next fixed tick', async () => {
    const { sim, a, b } = await leaderAndStandby();
    let lastRenewal = 0;
    b.lock.subscribe((e) => {
      if (e.kind === 'announcement' && e.announcement.event === 'renewed') lastRenewal = sim.time.now();
    });
    await sim.time.advance(2 * RENEW + 7);
    a.clock.paused = true; // the leader dies: no more renewals
    assert.ok(lastRenewal > 0, 'renewals are announced');
    const expiresAt = lastRenewal + TTL;
    await sim.time.advance(expiresAt - sim.time.now() - 1);
    assert.equal(b.elector.currentRole(), 'standby');
    await sim.time.advance(2);
    assert.equal(b.elector.currentRole(), 'active', 'took over within 1 ms of expiry');
  });

  it('retries at once when a holder announces its release or the connection comes back', async () => {
    const { sim, a, b } = await leaderAndStandby();
    await a.elector.stop();
    await sim.time.advance(0);
    assert.equal(b.elector.currentRole(), 'active', 'handover without waiting for a tick');
    assert.equal(a.elector.currentRole(), 'standby');

    const sim2 = simulate(1);
    const [c] = sim2.replicas as [SimReplica];
    c.lock.mode = 'down';
    c.elector.start();
    await sim2.time.advance(timing.commandTimeoutMs + 1);
    assert.equal(c.elector.currentRole(), 'standby');
    c.lock.mode = 'ok';
    const before = c.lock.calls.length;
    c.lock.emit({ kind: 'connected' });
    await sim2.time.advance(2);
    assert.deepEqual(c.lock.calls.slice(before), ['acquire'], 'looked at once, not at the next tick');
    await sim2.time.advance(TTL + RENEW);
    assert.equal(c.elector.currentRole(), 'active');
  });

  it('stop() aborts the leader work and releases the lease', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    assert.equal(sim.store.record()?.state, 'held');
    await a.elector.stop();
    assert.equal(sim.store.record()?.state, 'free', 'lease released');
    assert.equal(a.contexts[0]?.signal.aborted, true);
    assert.equal(a.elector.currentRole(), 'standby');
  });

  it('resign() steps down at once, releases and lets another replica lead with a higher token', async () => {
    const { sim, a, b } = await leaderAndStandby();
    a.contexts[0]?.resign('test');
    assert.equal(a.elector.currentRole(), 'standby');
    await sim.time.advance(1);
    assert.equal(b.elector.currentRole(), 'active');
    assert.ok((b.contexts[0]?.token ?? 0) > (a.contexts[0]?.token ?? 0));
  });

  it('reports a stuck loop (a call that never returns) as unhealthy, and a healthy standby as healthy', async () => {
    const { sim, a, b } = await leaderAndStandby();
    a.lock.mode = 'hang';
    await sim.time.advance(TTL + RENEW * 2);
    assert.equal(a.elector.snapshot().loopHealthy, false);
    assert.equal(a.elector.currentRole(), 'standby');
    assert.equal(b.elector.snapshot().loopHealthy, true);
  });

  it('hands out strictly increasing tokens across many failovers and never has two leaders (random faults)', async () => {
    let seed = 42;
    const rand = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const sim = simulate(3);
    for (const r of sim.replicas) r.elector.start();
    for (let round = 0; round < 60; round++) {
      const victim = sim.replicas[Math.floor(rand() * 3)] as SimReplica;
      const fault = rand();
      if (fault < 0.3) victim.clock.paused = !victim.clock.paused;
      else if (fault < 0.5) victim.lock.mode = victim.lock.mode === 'ok' ? 'down' : 'ok';
      else if (fault < 0.6) victim.lock.mode = victim.lock.mode === 'ok' ? 'timeout' : 'ok';
      else if (fault < 0.7) victim.lock.latencyMs = Math.floor(rand() * 150);
      else if (fault < 0.75)
        sim.store.raw = null; // DEL or eviction of the record
      else if (fault < 0.8) victim.lock.deaf = !victim.lock.deaf;
      await sim.time.advanceChecking(Math.floor(rand() * 2 * TTL), 5, () => assertAtMostOneActive(sim));
    }
    // Heal everything: somebody leads again.
    for (const r of sim.replicas) {
      r.clock.paused = false;
      r.lock.mode = 'ok';
      r.lock.latencyMs = 0;
    }
    await sim.time.advanceChecking(3 * TTL, 5, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((x) => x === 'active').length, 1);
    assertTokensIncrease(sim);
    assert.ok(sim.starts.length > 3, `several failovers happened (${sim.starts.length})`);
  });
  it('a deleted or evicted record ends the leadership at its next renewal and costs one barrier, never an overlap', async () => {
    const { sim, a } = await leaderAndStandby();
    const first = a.contexts[0]?.token ?? 0;
    sim.store.raw = null;
    await sim.time.advanceChecking(RENEW + 5, 1, () => assertAtMostOneActive(sim));
    assert.deepEqual(roles(sim), ['standby', 'standby'], 'the renewal found the record gone');
    assert.equal(sim.store.record()?.state, 'barrier');
    await sim.time.advanceChecking(TTL - 2 * RENEW, 5, () => assert.deepEqual(roles(sim), ['standby', 'standby']));
    await sim.time.advanceChecking(2 * RENEW + 10, 1, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((r) => r === 'active').length, 1);
    assertTokensIncrease(sim);
    assert.ok((sim.starts.at(-1)?.token ?? 0) > first);
  });

  it('a record deleted while the standby could not hear renewals still never overlaps (the barrier outlasts the holder)', async () => {
    const { sim, b } = await leaderAndStandby();
    b.lock.deaf = true;
    b.clock.paused = true; // the standby's view goes stale
    await sim.time.advance(TTL - 3 * RENEW); // a renews meanwhile; b hears nothing
    sim.store.raw = null;
    b.clock.paused = false;
    await sim.time.advanceChecking(3 * TTL, 1, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((r) => r === 'active').length, 1);
    assertTokensIncrease(sim);
  });

  it('Redis rolled back to an older record: no overlap, and no token is handed out twice', async () => {
    const sim = simulate(3);
    sim.store.facts = { ...sim.store.facts, durable: false };
    for (const r of sim.replicas) r.elector.start();
    await sim.time.advance(10);
    const snapshot = { raw: sim.store.raw, counter: sim.store.counter, fence: sim.store.fence };
    // Two more leaderships after the snapshot.
    for (let i = 0; i < 2; i++) {
      const leader = sim.replicas.find((r) => r.elector.currentRole() === 'active');
      leader?.contexts.at(-1)?.resign('move on');
      await sim.time.advanceChecking(3 * RENEW, 1, () => assertAtMostOneActive(sim));
    }
    const before = sim.starts.length;
    // Restart with the old data: every connection breaks, then the old record is back.
    sim.store.raw = snapshot.raw;
    sim.store.counter = snapshot.counter;
    sim.store.fence = snapshot.fence;
    for (const r of sim.replicas) r.lock.emit({ kind: 'disconnected' });
    await sim.time.advanceChecking(4 * TTL, 1, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((r) => r === 'active').length, 1, 'a leader again');
    assert.ok(sim.starts.length > before);
    assertTokensIncrease(sim);
  });

  it("a restore that brings back the paused old leader's own record: it does not take it at once while the new leader still leads", async () => {
    const { sim, a, b } = await leaderAndStandby();
    assert.equal(sim.store.facts.durable, true, 'even a Redis that says it keeps every write can be restored from a backup');
    await sim.time.advance(RENEW + 5);
    const backup = sim.store.raw; // a's newest renewal: the version a itself watches now
    a.clock.paused = true;
    await sim.time.advanceChecking(TTL + 2 * RENEW, 1, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'active', 'b took over');
    // Redis restarts from the backup: every connection breaks, a's record is back.
    sim.store.raw = backup;
    for (const r of sim.replicas) r.lock.emit({ kind: 'disconnected' });
    a.clock.paused = false;
    await sim.time.advanceChecking(3 * TTL, 1, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((r) => r === 'active').length, 1, 'a leader again');
    assertTokensIncrease(sim);
  });

  it("Redis away for longer than the lease, then back with the old leader's record: a leader one TTL after the reconnect, not at once", async () => {
    const { sim, a, b } = await leaderAndStandby();
    for (const r of [a, b]) {
      r.lock.mode = 'down';
      r.lock.emit({ kind: 'disconnected' });
    }
    await sim.time.advance(TTL + 2 * RENEW);
    assert.deepEqual(roles(sim), ['standby', 'standby'], 'the leader stepped down at its deadline');
    a.lock.calls.length = 0;
    for (const r of [a, b]) {
      r.lock.mode = 'ok';
      r.lock.emit({ kind: 'connected' });
    }
    // What came back may be a restore while somebody else led: nobody frees or takes it early.
    await sim.time.advanceChecking(TTL - 50, 1, () => assert.deepEqual(roles(sim), ['standby', 'standby']));
    assert.ok(!a.lock.calls.includes('abandon'), 'the old leader did not free its record for the others to take at once');
    await sim.time.advance(RENEW + 100);
    assert.equal(roles(sim).filter((r) => r === 'active').length, 1, 'a leader again');
    assertTokensIncrease(sim);
  });

  it('an older record written back without a break in the connection: no overlap, and no standby spins waiting for the newer one', async () => {
    const { sim, a, b } = await leaderAndStandby();
    await sim.time.advance(RENEW + 5);
    const older = sim.store.raw; // a version b saw and then saw replaced by the next renewal
    await sim.time.advance(RENEW);
    a.clock.paused = true; // the leader dies
    sim.store.raw = older; // and its older record comes back (RESTORE, DEBUG RELOAD): no 'disconnected'
    b.lock.calls.length = 0;
    await sim.time.advanceChecking(3 * TTL, 1, () => assert.equal(a.elector.currentRole() === 'active' && b.elector.currentRole() === 'active', false));
    assert.equal(b.elector.currentRole(), 'active', 'a leader again within 3 TTL');
    const looks = b.lock.calls.filter((c) => c === 'acquire').length;
    assert.ok(looks <= 3 * (TTL / RENEW) + 5, `${looks} acquires in 3 TTL: it waited, it did not retry every millisecond`);
    assertTokensIncrease(sim);
  });

  it('repairs a counter that is garbage, above 2^53 or below the fence instead of fighting it', async () => {
    for (const counter of ['garbage', '99999999999999999999', '5']) {
      const sim = simulate(2);
      sim.store.fence = '500';
      sim.store.counter = counter;
      for (const r of sim.replicas) r.elector.start();
      await sim.time.advanceChecking(3 * TTL, 5, () => assertAtMostOneActive(sim));
      assert.equal(sim.starts.length, 1, `counter ${counter}: one leadership, no churn`);
      assert.ok((sim.starts[0]?.token ?? 0) > 500, `counter ${counter}: token above the fence`);
      assert.equal(sim.store.counter, String(sim.starts[0]?.token), `counter ${counter}: repaired`);
    }
  });

  it('the longest TTL any holder used sizes the barrier after a data loss', async () => {
    const sim = simulate(2);
    const [long, short] = sim.replicas as [SimReplica, SimReplica];
    long.lock.ttlMs = 3 * TTL; // a replica configured with a longer TTL leads first
    await firstLeader(sim, [long]);
    short.elector.start();
    await sim.time.advance(RENEW);
    assert.equal(long.elector.currentRole(), 'active');
    long.clock.paused = true; // cut off, still believing it leads until its own (long) deadline
    sim.store.loseData();
    await sim.time.advanceChecking(3 * TTL - 2 * RENEW, 5, () => assert.equal(short.elector.currentRole(), 'standby'));
    await sim.time.advance(3 * TTL);
    assert.equal(short.elector.currentRole(), 'active');
  });

  it('after a break in the connection a standby waits a full TTL again, even on a Redis that says it keeps every write', async () => {
    const { sim, a, b } = await leaderAndStandby();
    assert.equal(sim.store.facts.durable, true);
    await sim.time.advance(TTL / 2);
    a.clock.paused = true; // the leader dies
    await sim.time.advance(TTL / 2 - 50);
    b.lock.emit({ kind: 'disconnected' }); // and Redis restarts just before b could take over
    await sim.time.advanceChecking(TTL - 100, 5, () => assert.equal(b.elector.currentRole(), 'standby'));
    await sim.time.advance(2 * RENEW);
    assert.equal(b.elector.currentRole(), 'active');
  });

  it('backs off after resigning, longer each time it repeats, so a failing leader does not keep the lease from others', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    const gaps: number[] = [];
    for (let i = 0; i < 3; i++) {
      const ctx = a.contexts.at(-1);
      const resignedAt = sim.time.now();
      ctx?.resign('work failed');
      const count = a.contexts.length;
      // Resign again as soon as it leads again: the failures repeat.
      for (let t = 0; t < 3 * TTL && a.contexts.length === count; t++) await sim.time.advance(1);
      const next = sim.starts[count];
      assert.ok(next, `led again after resignation ${i + 1}`);
      gaps.push(next.at - resignedAt);
    }
    assert.ok((gaps[0] ?? 0) >= RENEW, `first back-off ${gaps[0]} ms is at least one renew interval`);
    assert.ok((gaps[1] ?? 0) > (gaps[0] ?? 0) && (gaps[2] ?? 0) > (gaps[1] ?? 0), `back-off grows: ${gaps.join(', ')}`);
    assert.ok((gaps[2] ?? 0) <= TTL + 2 * RENEW, 'and stays within the TTL');
  });
  it('steps down at the first question after a host suspend, although its monotonic clock says the lease is still valid', async () => {
    const { sim, a } = await leaderAndStandby();
    await sim.time.advance(RENEW / 2);
    assert.equal(a.elector.currentRole(), 'active');
    a.clock.wallOffsetMs += 5 * TTL; // suspended for 5 s: wall time moved on, monotonic time did not
    assert.equal(a.elector.currentRole(), 'standby');
    assert.equal(a.contexts[0]?.signal.aborted, true);
  });

  it('does not mistake a wall clock that moves with the monotonic one for a suspend', async () => {
    const { sim, a } = await leaderAndStandby();
    await sim.time.advanceChecking(5 * TTL, 7, () => assert.equal(a.elector.currentRole(), 'active'));
    a.clock.wallOffsetMs -= 3_600_000; // a step back is no suspend
    assert.equal(a.elector.currentRole(), 'active');
  });
  it('takes a dead holder over within a look of its lease end even when every look takes 40 ms', async () => {
    const { sim, a, b } = await leaderAndStandby();
    b.lock.latencyMs = 40; // b's looks leave Redis 40 ms before their answers arrive
    b.lock.applyAtSend = true;
    let lastRenewal = 0;
    b.lock.subscribe((e) => {
      if (e.kind === 'announcement' && e.announcement.event === 'renewed') lastRenewal = sim.time.now();
    });
    await sim.time.advance(7 * RENEW + 13);
    a.clock.paused = true;
    await sim.time.advance(lastRenewal + TTL + 50 - sim.time.now());
    assert.equal(b.elector.currentRole(), 'active', 'taken over within one look of the lease end, not a poll later');
  });
});

/** Starts `starting` and advances until one of them has begun leading (its work may end at once). */
async function firstStart(sim: Sim, starting: SimReplica[]): Promise<void> {
  for (const r of starting) r.elector.start();
  for (let t = 0; t <= 2 * TTL && sim.starts.length === 0; t++) await sim.time.advance(1);
  assert.ok(sim.starts.length > 0, 'nobody led within 2 TTL of the start');
}

/** Work that ignores its signal and ends only when the test says so. */
/** Leader work that ends when its signal fires, as it should. */
function waitAbort(ctx: LeaderContext): Promise<void> {
  return new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
}

/** r0 leads with work that ignores its signal until told to finish; r1 stands by. */
/** Starts a switchover from `r` to `to`; the function returned reads its result once settled (null until then). */
function handOverTracked(r: SimReplica, to: string): () => string | null {
  let result: string | null = null;
  void r.elector.handOver(to).then((x) => (result = x));
  return () => result;
}

async function stubbornLeaderAndStandby(): Promise<{ sim: Sim; a: SimReplica; b: SimReplica; stubborn: ReturnType<typeof stubbornWork> }> {
  const stubborn = stubbornWork();
  const sim = simulate(2, { work: (ctx, id) => (id === 'r0' ? stubborn.work() : waitAbort(ctx)) });
  const [a, b] = sim.replicas as [SimReplica, SimReplica];
  await firstLeader(sim, [a]);
  b.elector.start();
  await sim.time.advance(1);
  return { sim, a, b, stubborn };
}

function stubbornWork(): { work: () => Promise<void>; finish: () => void; running: () => boolean } {
  let finish = (): void => undefined;
  let running = false;
  return {
    work: () => {
      running = true;
      return new Promise<void>((resolve) => {
        finish = () => {
          running = false;
          resolve();
        };
      });
    },
    finish: () => finish(),
    running: () => running,
  };
}

describe('LeaderElector supervising the leader work', () => {
  it('work that returns while leading makes the replica resign, and the standby leads with a higher token', async () => {
    let runs = 0;
    const sim = simulate(2, {
      work: async (ctx, id) => {
        if (id === 'r0' && runs++ === 0) return; // done at once: nothing left to lead for
        await waitAbort(ctx);
      },
    });
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    await firstStart(sim, [a]);
    b.elector.start();
    await sim.time.advanceChecking(5, 1, () => assertAtMostOneActive(sim));
    assert.deepEqual(a.transitions.slice(-2), [
      ['standby', 'active'],
      ['active', 'standby'],
    ]);
    await sim.time.advanceChecking(RENEW, 1, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'active', 'the released lease went to the standby');
    assert.ok((b.contexts[0]?.token ?? 0) > (a.contexts[0]?.token ?? 0));
    assert.equal(a.elector.currentRole(), 'standby');
  });

  it('work that throws makes the replica resign with back-off instead of staying ACTIVE with nothing running', async () => {
    const sim = simulate(1, {
      work: () => {
        throw new Error('boom');
      },
    });
    const [a] = sim.replicas as [SimReplica];
    await firstStart(sim, [a]);
    const ledAt = sim.time.now();
    await sim.time.advance(1);
    assert.equal(a.elector.currentRole(), 'standby', 'resigned right after the work threw');
    assert.equal(sim.store.record()?.state, 'free', 'and released the lease: the work had ended');
    for (let t = 0; t < 3 * TTL && a.contexts.length === 1; t++) await sim.time.advance(1);
    const second = sim.starts[1];
    assert.ok(second, 'led again after its back-off');
    assert.ok(second.at - ledAt >= RENEW, `not before the back-off of one renew interval (led again after ${second.at - ledAt} ms)`);
  });

  it('work that ignores the signal keeps the lease held after a resignation until it ends, then the standby takes over at once', async () => {
    const { sim, a, b, stubborn } = await stubbornLeaderAndStandby();
    a.contexts[0]?.resign('test');
    assert.equal(a.elector.currentRole(), 'standby');
    // Inside the lease and r0's back-off (one renew interval): still held by r0, nobody else leads.
    await sim.time.advanceChecking(RENEW - 50, 1, () => {
      assertAtMostOneActive(sim);
      assert.equal(b.elector.currentRole(), 'standby', 'no takeover while the old work runs');
      assert.equal(a.contexts.length, 1, 'no second run while the first is still running');
    });
    const rec = sim.store.record();
    assert.equal(rec?.state, 'held');
    assert.equal(rec?.instance, 'r0', 'the lease stays held while the work runs');
    stubborn.finish();
    await sim.time.advance(2);
    assert.equal(b.elector.currentRole(), 'active', 'released once the work ended, and taken at once');
  });

  it('work that never ends: the lease is not released, and the standby takes over only when it runs out', async () => {
    const stubborn = stubbornWork();
    const sim = simulate(2, { work: (ctx, id) => (id === 'r0' ? stubborn.work() : waitAbort(ctx)) });
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    let lastRenewal = 0;
    b.lock.subscribe((e) => {
      const an = e.kind === 'announcement' ? e.announcement : null;
      if (an && an.instanceId === 'r0' && (an.event === 'renewed' || an.event === 'acquired')) lastRenewal = sim.time.now();
    });
    await firstLeader(sim, [a]);
    b.elector.start();
    await sim.time.advance(2 * RENEW);
    a.contexts[0]?.resign('test');
    const resignedAt = sim.time.now();
    let takenAt: number | null = null;
    await sim.time.advanceChecking(2 * TTL, 1, () => {
      assertAtMostOneActive(sim);
      if (takenAt === null && b.elector.currentRole() === 'active') takenAt = sim.time.now();
    });
    assert.ok(takenAt !== null, 'the standby leads once the lease ran out');
    assert.ok(takenAt >= lastRenewal + TTL, `not before the lease ran out (last renewal ${lastRenewal}, taken at ${takenAt}, resigned at ${resignedAt})`);
    assert.equal(a.contexts.length, 1, 'r0 never led again while its work still ran');
    assert.equal(stubborn.running(), true);
  });

  it('stop() after a resignation whose work is still ending: releases the lease once the work ends within the grace', async () => {
    const stubborn = stubbornWork();
    const sim = simulate(1, { work: () => stubborn.work() });
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    a.contexts[0]?.resign('fenced write rejected');
    let stopped = false;
    void a.elector.stop(500).then(() => (stopped = true));
    await sim.time.advance(100);
    assert.equal(sim.store.record()?.state, 'held', 'held while the work runs');
    stubborn.finish();
    await sim.time.advance(2);
    assert.equal(stopped, true);
    assert.equal(sim.store.record()?.state, 'free', 'released by the stop, once the work ended');
    const snapshot = a.elector.snapshot();
    assert.notEqual(snapshot.holder, 'r0', 'a stopped replica does not claim to hold anything');
  });

  it('stop() with work that ignores the signal: waits the grace, then exits without releasing the lease', async () => {
    const stubborn = stubbornWork();
    const sim = simulate(1, { work: () => stubborn.work() });
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    let stopped = false;
    void a.elector.stop(200).then(() => (stopped = true));
    await sim.time.advance(199);
    assert.equal(stopped, false, 'waits for the work, up to the grace');
    await sim.time.advance(2);
    assert.equal(stopped, true);
    assert.equal(sim.store.record()?.state, 'held', 'not released: the work may still be writing');
  });
});

describe('LeaderElector keeping the lease held while the leader work ends', () => {
  it('a look whose reply times out does not free the lease while the work still runs (resign, switchover)', async () => {
    for (const how of ['resign', 'switchover'] as const) {
      const stubborn = stubbornWork();
      const sim = simulate(3, { work: (ctx, id) => (id === 'r0' ? stubborn.work() : waitAbort(ctx)) });
      const [a, b, c] = sim.replicas as [SimReplica, SimReplica, SimReplica];
      await firstLeader(sim, [a]);
      b.elector.start();
      c.elector.start();
      await sim.time.advance(1);
      if (how === 'resign') a.contexts[0]?.resign('test');
      else void a.elector.handOver('r1');
      a.lock.mode = 'late'; // its looks run in Redis, their replies time out
      await sim.time.advanceChecking(TTL - 100, 1, () => {
        const other = sim.replicas.find((r) => r !== a && r.elector.currentRole() === 'active');
        assert.equal(other, undefined, `${how}: ${other?.id} led at t=${sim.time.now()} while r0's work still ran (record ${sim.store.raw})`);
      });
    }
  });

  it('a resign() from the first synchronous lines of the work still waits for the work to end', async () => {
    const stubborn = stubbornWork();
    let first = true;
    const sim = simulate(2, {
      work: async (ctx, id) => {
        if (id === 'r0' && first) {
          first = false;
          ctx.resign('precondition failed'); // before the work's first await
          await stubborn.work();
          return;
        }
        await waitAbort(ctx);
      },
    });
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    await firstStart(sim, [a]);
    b.elector.start();
    // Within r0's back-off (one renew interval), so the released lease goes to b.
    await sim.time.advanceChecking(RENEW - 50, 1, () => assert.equal(b.elector.currentRole(), 'standby', `b led at t=${sim.time.now()} beside r0's work`));
    stubborn.finish();
    await sim.time.advance(2);
    assert.equal(b.elector.currentRole(), 'active');
  });

  it('a release whose work ends after the lease deadline is not sent (resign, stop): the lease runs out by itself', async () => {
    for (const how of ['resign', 'stop'] as const) {
      const { sim, a, stubborn } = await stubbornLeaderAndStandby();
      const lastOk = sim.time.now() - 3;
      if (how === 'resign') a.contexts[0]?.resign('test');
      else void a.elector.stop(10 * TTL);
      // The work ends after the deadline of the lease it held, before anyone took over.
      await sim.time.advance(lastOk + timing.leaseValidityMs + 5 - sim.time.now());
      assert.deepEqual(roles(sim), ['standby', 'standby'], `${how}: nobody took over yet`);
      // Had a restore brought the record back as a's by now, a late release would free it.
      stubborn.finish();
      await sim.time.advanceChecking(TTL, 1, () => assertAtMostOneActive(sim));
      assert.equal(a.lock.calls.filter((c) => c === 'release').length, 0, `${how}: no release after the deadline`);
      assert.deepEqual(
        roles(sim).filter((r) => r === 'active'),
        ['active'],
        `${how}: a leader again once the lease ran out`,
      );
    }
  });

  it('a resign() or stop() right after a host suspend releases nothing: the lease may be over already', async () => {
    for (const how of ['resign', 'stop'] as const) {
      const { sim, a } = await leaderAndStandby();
      a.clock.wallOffsetMs += 5 * TTL; // the host slept; its monotonic clock did not move
      if (how === 'resign') a.contexts[0]?.resign('test');
      else void a.elector.stop();
      await sim.time.advanceChecking(RENEW, 1, () => assertAtMostOneActive(sim));
      assert.equal(a.lock.calls.filter((c) => c === 'release').length, 0, `${how}: no release`);
    }
  });

  it('does not poll Redis in a tight loop while its work ends (resign, deadline, switchover, and a work that never ends)', async () => {
    for (const how of ['resign', 'deadline', 'switchover'] as const) {
      const stubborn = stubbornWork();
      const sim = simulate(2, { work: (ctx, id) => (id === 'r0' ? stubborn.work() : waitAbort(ctx)) });
      const [a, b] = sim.replicas as [SimReplica, SimReplica];
      await firstLeader(sim, [a]);
      b.elector.start();
      await sim.time.advance(RENEW);
      if (how === 'resign') a.contexts[0]?.resign('test');
      if (how === 'switchover') void a.elector.handOver('r1');
      if (how === 'deadline') {
        a.lock.mode = 'down';
        await sim.time.advance(TTL);
        a.lock.mode = 'ok';
      }
      a.lock.calls.length = 0;
      await sim.time.advance(600);
      assert.ok(a.lock.calls.length <= 600 / RENEW + 2, `${how}: ${a.lock.calls.length} lease calls in 600 ms`);
    }
    const stubborn = stubbornWork();
    const sim = simulate(1, { work: () => stubborn.work() });
    const [a] = sim.replicas as [SimReplica];
    await firstLeader(sim);
    a.contexts[0]?.resign('test');
    await sim.time.advance(2 * TTL);
    a.lock.calls.length = 0;
    await sim.time.advance(2_000);
    assert.ok(a.lock.calls.length <= 2_000 / RENEW + 2, `${a.lock.calls.length} lease calls in 2 s`);
  });
});

describe('LeaderElector planned switchover', () => {
  it('hands the lease to the named standby, which leads at once; the other standby keeps waiting', async () => {
    const sim = simulate(3);
    const [a, b, c] = sim.replicas as [SimReplica, SimReplica, SimReplica];
    await firstLeader(sim, [a]);
    b.elector.start();
    c.elector.start();
    await sim.time.advance(RENEW);
    const result = a.elector.handOver('r2');
    let takenAt: number | null = null;
    const from = sim.time.now();
    await sim.time.advanceChecking(50, 1, () => {
      assertAtMostOneActive(sim);
      if (takenAt === null && c.elector.currentRole() === 'active') takenAt = sim.time.now();
    });
    assert.equal(await result, 'handed_over');
    assert.ok(takenAt !== null && takenAt - from <= 2, `the successor led within 2 ms (at ${takenAt}, asked at ${from})`);
    assert.equal(b.elector.currentRole(), 'standby');
    assert.equal(a.elector.currentRole(), 'standby');
    assertTokensIncrease(sim);
    // The old leader and the other standby wait; the new leader keeps it.
    await sim.time.advanceChecking(3 * TTL, 7, () => assert.equal(c.elector.currentRole(), 'active'));
  });

  it('a successor that missed the announcement takes the handoff at its next look', async () => {
    const sim = simulate(2);
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    await firstLeader(sim, [a]);
    b.elector.start();
    await sim.time.advance(RENEW);
    b.lock.deaf = true;
    const from = sim.time.now();
    void a.elector.handOver('r1');
    let takenAt: number | null = null;
    await sim.time.advanceChecking(2 * RENEW, 1, () => {
      assertAtMostOneActive(sim);
      if (takenAt === null && b.elector.currentRole() === 'active') takenAt = sim.time.now();
    });
    assert.ok(takenAt !== null && takenAt - from <= RENEW + 1, `led at its next look (${takenAt === null ? 'never' : takenAt - from} ms)`);
  });

  it('a handoff to a successor that never comes costs one TTL, then another standby leads', async () => {
    const sim = simulate(2);
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    await firstLeader(sim, [a]);
    b.elector.start();
    await sim.time.advance(RENEW);
    const from = sim.time.now();
    assert.equal(await a.elector.handOver('gone'), 'handed_over');
    let takenAt: number | null = null;
    await sim.time.advanceChecking(2 * TTL, 1, () => {
      assertAtMostOneActive(sim);
      if (takenAt === null && sim.replicas.some((r) => r.elector.currentRole() === 'active')) takenAt = sim.time.now();
    });
    assert.ok(
      takenAt !== null && takenAt - from >= TTL,
      `nobody led before the handoff stood one TTL (led ${takenAt === null ? 'never' : takenAt - from} ms after)`,
    );
    assertTokensIncrease(sim);
  });

  it('acts on a switchover request only when it names this replica as the leader', async () => {
    const { sim, a, b } = await leaderAndStandby();
    const token = a.contexts[0]?.token ?? 0;
    b.lock.emit({ kind: 'switchover', request: { id: '01', from: 'r1', token, to: 'r0' } }); // b does not lead
    a.lock.emit({ kind: 'switchover', request: { id: '02', from: 'someone', token, to: 'r1' } }); // not a
    a.lock.emit({ kind: 'switchover', request: { id: '03', from: 'r0', token: token - 1, to: 'r1' } }); // an earlier leadership of a
    await sim.time.advance(5);
    assert.equal(a.elector.currentRole(), 'active');
    a.lock.emit({ kind: 'switchover', request: { id: '04', from: 'r0', token, to: 'r1' } });
    await sim.time.advanceChecking(5, 1, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'active');
  });

  it('a handoff that fails while Redis is away is tried again once it is back, before the deadline: the successor leads at once', async () => {
    const { sim, a, b } = await leaderAndStandby();
    a.lock.mode = 'down';
    const result = a.elector.handOver('r1');
    await sim.time.advanceChecking(3 * timing.renewRetryMs, 1, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'standby', 'nothing handed over while Redis is away');
    const backAt = sim.time.now();
    a.lock.mode = 'ok';
    let takenAt: number | null = null;
    await sim.time.advanceChecking(2 * timing.renewRetryMs, 1, () => {
      assertAtMostOneActive(sim);
      if (takenAt === null && b.elector.currentRole() === 'active') takenAt = sim.time.now();
    });
    assert.equal(await result, 'handed_over');
    assert.ok(
      takenAt !== null && takenAt - backAt <= timing.renewRetryMs + 2,
      `the successor led ${takenAt === null ? 'never' : takenAt - backAt} ms after Redis was back`,
    );
  });

  it('a handoff that keeps failing stops at the lease deadline; the lease runs out and a standby takes over then', async () => {
    const { sim, a, b } = await leaderAndStandby();
    const lastOk = sim.time.now() - 2;
    a.lock.mode = 'down';
    const result = handOverTracked(a, 'r1');
    await sim.time.advanceChecking(timing.leaseValidityMs, 1, () => assertAtMostOneActive(sim));
    assert.equal(result(), 'lost', 'given up by the deadline');
    const triesAtDeadline = a.lock.calls.filter((c) => c === 'release').length;
    assert.equal(triesAtDeadline, 1, 'no call while Redis is away: it waits for the connection');
    a.lock.mode = 'ok';
    await sim.time.advanceChecking(TTL, 1, () => {
      assertAtMostOneActive(sim);
      if (sim.time.now() < lastOk + TTL) assert.equal(b.elector.currentRole(), 'standby', 'not before the lease ran out');
    });
    assert.equal(b.elector.currentRole(), 'active');
    assert.equal(a.lock.calls.filter((c) => c === 'release').length, triesAtDeadline, 'no handoff after the deadline');
  });

  it('a handoff try that falls due after the deadline (the replica was paused) is not sent: a record brought back by a restore is not handed on', async () => {
    const { sim, a, b } = await leaderAndStandby();
    const lastOk = sim.time.now() - 2;
    a.lock.mode = 'down';
    const result = handOverTracked(a, 'r1');
    await sim.time.advance(1);
    a.clock.paused = true; // SIGSTOP in the middle of its wait for Redis
    await sim.time.advanceChecking(TTL + RENEW, 1, () => assertAtMostOneActive(sim));
    assert.equal(b.elector.currentRole(), 'active', 'the standby took over when the lease ran out');
    // Redis comes back with a's record (a restore: a restart, so every connection breaks), and a
    // wakes: no handoff may go out now.
    a.lock.mode = 'ok';
    for (const r of [a, b]) r.lock.emit({ kind: 'disconnected' });
    sim.store.raw = formatRecord({
      state: 'held',
      ver: sim.store.newVer(),
      token: a.contexts[0]?.token ?? 0,
      ttl: TTL,
      maxttl: TTL,
      session: a.lock.session,
      instance: 'r0',
    });
    a.clock.paused = false;
    await sim.time.advanceChecking(2 * timing.renewRetryMs, 1, () => assertAtMostOneActive(sim));
    assert.equal(result(), 'lost');
    assert.equal(a.lock.calls.filter((c) => c === 'release').length, 1, `only the first try, sent at ${lastOk + 2}, before the deadline`);
    assert.equal(sim.store.record()?.state, 'held', 'the restored record is left as it is');
  });

  it('a host suspend during the wait for Redis (wall time moved on, monotonic did not): no handoff is sent', async () => {
    const { sim, a } = await leaderAndStandby();
    a.lock.mode = 'down';
    const result = handOverTracked(a, 'r1');
    await sim.time.advance(1);
    a.clock.wallOffsetMs += 5 * TTL; // suspended for five TTLs: its deadline passed unseen
    a.lock.mode = 'ok';
    await sim.time.advanceChecking(2 * timing.renewRetryMs, 1, () => assertAtMostOneActive(sim));
    assert.equal(result(), 'lost');
    assert.equal(a.lock.calls.filter((c) => c === 'release').length, 1, 'only the first try, before the suspend');
  });

  it('stop() that overtakes a switchover while the work ends: the handoff still goes out once the work has ended', async () => {
    const { sim, a, b, stubborn } = await stubbornLeaderAndStandby();
    const result = handOverTracked(a, 'r1');
    await sim.time.advance(10);
    let resultWhenStopped: string | null = 'stop() has not returned';
    void a.elector.stop().then(() => (resultWhenStopped = result()));
    await sim.time.advanceChecking(10, 1, () => assert.equal(b.elector.currentRole(), 'standby'));
    stubborn.finish();
    await sim.time.advanceChecking(5, 1, () => assertAtMostOneActive(sim));
    assert.equal(result(), 'handed_over');
    assert.equal(resultWhenStopped, 'handed_over', 'stop() closed the connection only after the handoff was done');
    assert.equal(b.elector.currentRole(), 'active', 'the successor led at once');
  });

  it('stop() during a switchover whose work ignores its signal returns after its grace, not at the lease deadline', async () => {
    const { sim, a } = await stubbornLeaderAndStandby();
    void a.elector.handOver('r1');
    await sim.time.advance(1);
    let stopped = false;
    void a.elector.stop(50).then(() => (stopped = true));
    await sim.time.advance(60);
    assert.ok(stopped, 'stop() kept to its 50 ms grace');
  });

  it('an acquire that comes back while stopping, after the lease it granted would be over, is not released', async () => {
    const { sim, a, b } = await leaderAndStandby();
    b.lock.latencyMs = TTL; // applied in Redis at once, answered one TTL later
    b.lock.applyAtSend = true;
    void a.elector.stop(); // releases: b acquires at once, its answer on the way
    await sim.time.advance(5);
    assert.equal(sim.store.record()?.instance, 'r1', 'b took the lease in Redis');
    let stopped = false;
    void b.elector.stop().then(() => (stopped = true));
    await sim.time.advance(TTL + 10);
    assert.ok(stopped);
    assert.equal(b.lock.calls.filter((c) => c === 'release').length, 0, 'no release after the lease it granted would be over');
  });

  it('stop() during a handoff that waits for Redis ends the wait at once', async () => {
    const { sim, a } = await leaderAndStandby();
    a.lock.mode = 'down';
    const result = handOverTracked(a, 'r1');
    await sim.time.advance(1);
    let stopped = false;
    void a.elector.stop().then(() => (stopped = true));
    await sim.time.advance(1);
    assert.equal(result(), 'lost');
    assert.ok(stopped, 'stop() returned without waiting out the retry interval');
    assert.equal(a.lock.calls.filter((c) => c === 'release').length, 1);
  });

  it('waits for the leader work to end before handing over', async () => {
    const { sim, a, b, stubborn } = await stubbornLeaderAndStandby();
    void a.elector.handOver('r1');
    await sim.time.advanceChecking(100, 1, () => assert.equal(b.elector.currentRole(), 'standby'));
    stubborn.finish();
    await sim.time.advance(2);
    assert.equal(b.elector.currentRole(), 'active');
  });
});

describe('LeaderElector on a cluster declared brand-new (grinder init)', () => {
  it('leads at once instead of after the data-loss barrier', async () => {
    const sim = simulate(2, { fresh: true });
    sim.store.declared = true;
    const t0 = sim.time.now();
    await firstLeader(sim);
    assert.ok(sim.time.now() - t0 <= 2, `led ${sim.time.now() - t0} ms after the start`);
    await sim.time.advanceChecking(2 * TTL, 1, () => assertAtMostOneActive(sim));
    assert.equal(sim.starts.length, 1);
    assert.equal(sim.store.declared, false, 'the declaration is used up');
  });

  it('without the declaration the first leader still waits out the barrier', async () => {
    const sim = simulate(2, { fresh: true });
    const t0 = sim.time.now();
    await firstLeader(sim);
    assert.ok(sim.time.now() - t0 >= TTL, `led ${sim.time.now() - t0} ms after the start`);
  });

  it('a replica that saw a break in its connection writes the barrier even on a declared cluster', async () => {
    const sim = simulate(1, { fresh: true });
    const [a] = sim.replicas as [SimReplica];
    sim.store.declared = true;
    a.lock.emit({ kind: 'disconnected' });
    const t0 = sim.time.now();
    await firstLeader(sim);
    assert.ok(sim.time.now() - t0 >= TTL, `led ${sim.time.now() - t0} ms after the start`);
  });

  it('a rollback that brings the declaration back: a replica started afterwards does not lead beside the old leader', async () => {
    const sim = simulate(2, { fresh: true });
    const [a, b] = sim.replicas as [SimReplica, SimReplica];
    sim.store.declared = true;
    await firstLeader(sim, [a]);
    b.elector.start();
    await sim.time.advance(RENEW);
    // A failover to a replica without the first leadership (or a lost AOF tail): the init key is
    // back, record and counter gone. The old leader's registration says it saw a token; it
    // registers again as soon as its connection is back (src/cluster/membership.ts).
    sim.store.raw = null;
    sim.store.counter = null;
    sim.store.declared = true;
    for (const r of [a, b]) r.lock.emit({ kind: 'disconnected' });
    sim.store.veterans.add('r0');
    const net = sim.time.forProcess();
    const lock = new FakeLock(sim.store, 'r9', 'a9', (fn, ms) => net.setTimeout(fn, ms));
    lock.ttlMs = TTL;
    const c = new LeaderElector({ instanceId: 'r9', timing, lock, clock: sim.time.forProcess(), log: silent });
    c.start();
    await sim.time.advanceChecking(2 * TTL, 1, () => {
      const active = [a.elector, b.elector, c].filter((e) => e.currentRole() === 'active');
      assert.ok(active.length <= 1, `two leaders at t=${sim.time.now()}`);
    });
    assert.equal(sim.store.declared, false, 'the newcomer wrote the barrier, which used the declaration up');
  });

  it('a Redis that loses its data later gets the barrier again', async () => {
    const sim = simulate(2, { fresh: true });
    sim.store.declared = true;
    await firstLeader(sim);
    sim.store.loseData();
    const lostAt = sim.time.now();
    await sim.time.advanceChecking(3 * TTL, 1, () => {
      assertAtMostOneActive(sim);
      const active = sim.starts.length > 1;
      if (active) assert.ok((sim.starts[1]?.at ?? 0) - lostAt >= TTL, 'no new leader before the barrier stood one TTL');
    });
    assert.equal(sim.starts.length, 2);
  });
});

describe('LeaderElector loop', () => {
  it('never has two acquire or renew calls in flight: a resignation during a slow renewal waits for it before looking again', async () => {
    const sim = simulate(1, {
      work: async (ctx) => {
        await waitAbort(ctx);
      },
    });
    const [a] = sim.replicas as [SimReplica];
    let inFlight = 0;
    let most = 0;
    const track = <T>(p: Promise<T>): Promise<T> => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      return p.finally(() => {
        inFlight -= 1;
      });
    };
    const acquire = a.lock.acquire.bind(a.lock);
    const renew = a.lock.renew.bind(a.lock);
    a.lock.acquire = (request) => track(acquire(request));
    a.lock.renew = (lease) => track(renew(lease));
    await firstStart(sim, [a]);
    // Renewals now take longer than the back-off after a first resignation (one renew interval).
    a.lock.latencyMs = RENEW + 100;
    await sim.time.advance(RENEW + 1); // the renewal is on its way
    assert.equal(inFlight, 1, 'a renewal is in flight');
    a.contexts[0]?.resign('test');
    await sim.time.advanceChecking(3 * TTL, 1, () => assert.ok(inFlight <= 1, `${inFlight} acquire/renew calls in flight at t=${sim.time.now()}`));
    assert.equal(most, 1);
    a.lock.latencyMs = 0;
    await sim.time.advance(2 * TTL);
    assert.equal(a.elector.currentRole(), 'active', 'it leads again after the back-off');
  });
});
