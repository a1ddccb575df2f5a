import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { LeaderElector } from '../../src/ha/elector';
import type { LeaderContext, Role } from '../../src/ha/role';
import { leaseTiming } from '../../src/ha/timing';
import { FakeTime, type ProcessClock } from '../support/fake-clock';
import { FakeLeaseStore, FakeLock } from '../support/fake-lock';

const silent = pino({ level: 'silent' });
const TTL = 1_000;
const RENEW = 300;
const timing = leaseTiming(TTL, RENEW);

interface Sim {
  time: FakeTime;
  store: FakeLeaseStore;
  replicas: SimReplica[];
}

interface SimReplica {
  id: string;
  clock: ProcessClock;
  lock: FakeLock;
  elector: LeaderElector;
  transitions: [Role, Role][];
  contexts: LeaderContext[];
}

function simulate(n: number, opts: { counter?: number | null } = {}): Sim {
  const time = new FakeTime();
  const store = new FakeLeaseStore(time);
  if (opts.counter !== undefined) store.counter = opts.counter;
  const network = time.forProcess();
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
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    });
    return { id, clock, lock, elector, transitions, contexts };
  });
  return { time, store, replicas };
}

/** Two replicas: a starts first and leads, b starts next and stands by. */
async function leaderAndStandby(): Promise<{ sim: Sim; a: SimReplica; b: SimReplica }> {
  const sim = simulate(2);
  const [a, b] = sim.replicas as [SimReplica, SimReplica];
  a.elector.start();
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
    assert.deepEqual(roles(sim).sort(), ['active', 'standby']);
    const leader = sim.replicas.find((r) => r.elector.currentRole() === 'active');
    assert.ok(leader);
    assert.equal(leader.contexts.length, 1, 'leader work started once');
    assert.equal(leader.contexts[0]?.token, 101);
    assert.equal(leader.elector.snapshot().fencingToken, 101);
  });

  it('renews every renew interval and stays ACTIVE while renewals succeed', async () => {
    const sim = simulate(2);
    for (const r of sim.replicas) r.elector.start();
    await sim.time.advance(1);
    const leader = sim.replicas.find((r) => r.elector.currentRole() === 'active');
    assert.ok(leader);
    leader.lock.calls.length = 0;
    await sim.time.advanceChecking(10 * RENEW, 10, () => assertAtMostOneActive(sim));
    assert.equal(leader.lock.calls.filter((c) => c === 'renew').length, 10);
    assert.equal(leader.elector.currentRole(), 'active');
    assert.equal(leader.transitions.length, 1);
  });

  it('steps down by its own clock at sentAt + TTL - margin when Redis stops answering, and the standby takes over only after expiry', async () => {
    const { sim, a, b } = await leaderAndStandby();
    assert.equal(a.elector.currentRole(), 'active');
    const lastOk = sim.time.now() - 2; // a acquired at t0 (sent at t0)
    a.lock.mode = 'down';
    const signal = a.contexts[0]?.signal;
    assert.ok(signal);
    // a may not be ACTIVE at or after lastOk + validity, whatever its renewals did meanwhile.
    await sim.time.advanceChecking(TTL + RENEW, 5, () => {
      assertAtMostOneActive(sim);
      if (sim.time.now() >= lastOk + RENEW * 3 + timing.leaseValidityMs) {
        assert.equal(a.elector.currentRole(), 'standby');
      }
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
    a.elector.start();
    await sim.time.advance(1);
    a.lock.mode = 'timeout';
    await sim.time.advance(RENEW + 250); // one renew timed out
    assert.equal(a.elector.currentRole(), 'active');
    a.lock.mode = 'ok';
    await sim.time.advance(timing.renewRetryMs + 10);
    assert.equal(a.elector.currentRole(), 'active');
    await sim.time.advance(5 * TTL);
    assert.equal(a.elector.currentRole(), 'active');
    assert.equal(a.transitions.length, 1, 'no flapping');
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
    a.elector.start();
    await sim.time.advance(1);
    sim.store.set('999|ff|intruder', TTL);
    await sim.time.advance(RENEW);
    assert.equal(a.elector.currentRole(), 'standby');
    assert.equal(a.contexts[0]?.signal.aborted, true);
    assert.deepEqual(a.elector.snapshot().holder, 'intruder');
  });

  it('treats garbage and a wrong-type key as held by someone else, never as ours', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    sim.store.set('not a lease', TTL * 100);
    a.elector.start();
    await sim.time.advance(5 * RENEW);
    assert.equal(a.elector.currentRole(), 'standby');
    sim.store.set(null);
    sim.store.keyType = 'hash';
    await sim.time.advance(5 * RENEW);
    assert.equal(a.elector.currentRole(), 'standby');
    sim.store.keyType = 'string';
    await sim.time.advance(RENEW + 1);
    assert.equal(a.elector.currentRole(), 'active');
  });

  it('waits one full TTL after Redis lost its data before anybody leads (lock-delay barrier)', async () => {
    const sim = simulate(2, { counter: null });
    for (const r of sim.replicas) r.elector.start();
    await sim.time.advanceChecking(TTL - 10, 5, () => assert.deepEqual(roles(sim), ['standby', 'standby']));
    await sim.time.advance(20);
    assert.deepEqual(roles(sim).sort(), ['active', 'standby']);
  });

  it('retries right when the holder lease expires, not at the next fixed tick', async () => {
    const { sim, a, b } = await leaderAndStandby();
    a.clock.paused = true; // the leader dies: no more renewals
    const expiresAt = sim.store.expiresAt;
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
    c.lock.emit('connected');
    await sim2.time.advance(0);
    assert.equal(c.elector.currentRole(), 'active');
  });

  it('stop() aborts the leader work and releases the lease', async () => {
    const sim = simulate(1);
    const [a] = sim.replicas as [SimReplica];
    a.elector.start();
    await sim.time.advance(1);
    assert.notEqual(sim.store.current(), null);
    await a.elector.stop();
    assert.equal(sim.store.current(), null, 'lease released');
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
    const tokens: number[] = [];
    for (let round = 0; round < 60; round++) {
      const victim = sim.replicas[Math.floor(rand() * 3)] as SimReplica;
      const fault = rand();
      if (fault < 0.3) victim.clock.paused = !victim.clock.paused;
      else if (fault < 0.5) victim.lock.mode = victim.lock.mode === 'ok' ? 'down' : 'ok';
      else if (fault < 0.6) victim.lock.mode = victim.lock.mode === 'ok' ? 'timeout' : 'ok';
      else if (fault < 0.7) victim.lock.latencyMs = Math.floor(rand() * 150);
      await sim.time.advanceChecking(Math.floor(rand() * 2 * TTL), 5, () => assertAtMostOneActive(sim));
      for (const r of sim.replicas) {
        for (const c of r.contexts) if (!tokens.includes(c.token)) tokens.push(c.token);
      }
    }
    // Heal everything: somebody leads again.
    for (const r of sim.replicas) {
      r.clock.paused = false;
      r.lock.mode = 'ok';
      r.lock.latencyMs = 0;
    }
    await sim.time.advanceChecking(3 * TTL, 5, () => assertAtMostOneActive(sim));
    assert.equal(roles(sim).filter((x) => x === 'active').length, 1);
    const starts = sim.replicas.flatMap((r) => r.contexts.map((c) => c.token));
    assert.equal(new Set(starts).size, starts.length, 'every leadership has its own token');
    assert.ok(starts.length > 3, `several failovers happened (${starts.length})`);
  });
});
