import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { AcquireRequest, AcquireResult, Announcement, Lease, LeaseLock } from '../../src/ha/lock';
import { RedisLeaseLock } from '../../src/ha/redis-lock';
import { parseRedisTarget } from '../../src/redis/target';
import { defineCommands } from '../../src/redis/commands';
import { leaseKeys } from '../../src/redis/keys';
import { FakeTime } from '../support/fake-clock';
import { FakeLeaseStore, FakeLock } from '../support/fake-lock';
import { RedisServer } from '../../tools/kit/redis';
import { waitFor } from '../../tools/kit/time';

/*
 * The same cases against the in-memory fake (which the elector's unit tests run on) and against
 * the Lua scripts on a real redis-server: if the fake's rules drift from the scripts', this fails.
 */

const TTL = 2_000;
const LOOK: AcquireRequest = { expectedVer: null, floor: 0, barrierMs: TTL };

/** One lock key's store, seen from the test: make locks on it and poke its keys. */
interface StoreUnderTest {
  lock(instanceId: string, ttlMs?: number): Promise<LeaseLock>;
  deleteRecord(): Promise<void>;
  setRecordString(value: string): Promise<void>;
  makeRecordAHash(): Promise<void>;
  setCounter(value: string | null): Promise<void>;
  setFence(value: string | null): Promise<void>;
  counter(): Promise<string | null>;
  /** The record's state field, or null when there is no record (or it is not one). */
  recordState(): Promise<string | null>;
  /** Announcements heard by a listener on this store, in order (after any delivery delay). */
  heard(): Promise<Announcement[]>;
  /** `grinder init`: declares a brand-new cluster; false where GRINDER left a record, counter or fence. */
  declare(): Promise<boolean>;
  /** A live member registration that says it has seen a fencing token (heartbeat-3.lua). */
  registerVeteran(instanceId: string): Promise<void>;
}

interface Implementation {
  name: string;
  store(): Promise<StoreUnderTest>;
}

const fake: Implementation = {
  name: 'FakeLock',
  async store() {
    const time = new FakeTime();
    const s = new FakeLeaseStore(time);
    const heard: Announcement[] = [];
    const ear = new FakeLock(s, 'ear', 'e0', () => undefined);
    ear.subscribe((e) => {
      if (e.kind === 'announcement') heard.push(e.announcement);
    });
    let n = 0;
    return {
      async lock(instanceId, ttlMs = TTL) {
        n += 1;
        const l = new FakeLock(s, instanceId, `a${n}`, () => undefined);
        l.ttlMs = ttlMs;
        return l;
      },
      async deleteRecord() {
        s.raw = null;
      },
      async setRecordString(value) {
        s.keyType = 'string';
        s.raw = value;
      },
      async makeRecordAHash() {
        s.raw = null;
        s.keyType = 'hash';
      },
      async setCounter(value) {
        s.counter = value;
      },
      async setFence(value) {
        s.fence = value;
      },
      async counter() {
        return s.counter;
      },
      async recordState() {
        return s.record()?.state ?? null;
      },
      async heard() {
        return heard;
      },
      async declare() {
        if (s.raw !== null || s.counter !== null || s.fence !== null) return false;
        s.declared = true;
        return true;
      },
      async registerVeteran(instanceId) {
        s.veterans.add(instanceId);
      },
    };
  },
};

let server: RedisServer;
let raw: Redis;
const opened: LeaseLock[] = [];
const clients: Redis[] = [];

const redis: Implementation = {
  name: 'RedisLeaseLock',
  async store() {
    const lockKey = `t:${randomBytes(6).toString('hex')}:lock`;
    const keys = leaseKeys(lockKey);
    const heard: Announcement[] = [];
    const ear = await openRedisLock(lockKey, 'ear', TTL);
    ear.subscribe((e) => {
      if (e.kind === 'announcement') heard.push(e.announcement);
    });
    await waitFor('the listener subscribed', async () => ((await raw.pubsub('NUMSUB', keys.events))[1] === 1 ? true : undefined));
    return {
      lock: (instanceId, ttlMs = TTL) => openRedisLock(lockKey, instanceId, ttlMs),
      async deleteRecord() {
        await raw.del(keys.record);
      },
      async setRecordString(value) {
        await raw.set(keys.record, value);
      },
      async makeRecordAHash() {
        await raw.del(keys.record);
        await raw.hset(keys.record, 'f', 'v');
      },
      async setCounter(value) {
        if (value === null) await raw.del(keys.counter);
        else await raw.set(keys.counter, value);
      },
      async setFence(value) {
        if (value === null) await raw.del(keys.fence);
        else await raw.set(keys.fence, value);
      },
      counter: () => raw.get(keys.counter),
      async recordState() {
        if ((await raw.type(keys.record)) !== 'string') return null;
        const v = (await raw.get(keys.record)) ?? '';
        return /^2\|([a-z]+)\|/.exec(v)?.[1] ?? null;
      },
      async heard() {
        // Pub/sub is asynchronous: a PING on the listener's own connection would not order it, so
        // wait for the count of announcements to stop changing.
        let count = -1;
        while (count !== heard.length) {
          count = heard.length;
          await new Promise((r) => setTimeout(r, 50));
        }
        return heard;
      },
      async declare() {
        const reply = await raw.grinderDeclare(keys.record, keys.counter, keys.fence, keys.init, 60_000);
        return reply[0] === 1;
      },
      async registerVeteran(instanceId) {
        const registration = JSON.stringify({ instance_id: instanceId, fencing_token: 1796663438192503 });
        await raw.grinderHeartbeat(keys.members, keys.member(instanceId), keys.veterans, instanceId, 60_000, registration, '1');
      },
    };
  },
};

async function openRedisLock(lockKey: string, instanceId: string, ttlMs: number): Promise<RedisLeaseLock> {
  const lock = new RedisLeaseLock({
    target: parseRedisTarget(server.url),
    minReplicas: 'auto',
    lockKey,
    instanceId,
    session: randomBytes(8).toString('hex'),
    ttlMs,
    commandTimeoutMs: 1_000,
  });
  opened.push(lock);
  await waitFor(`${instanceId} connected`, () => (lock.isConnected() ? true : undefined));
  return lock;
}

before(async () => {
  server = await RedisServer.start();
  raw = new Redis(server.url);
  defineCommands(raw);
  clients.push(raw);
});

after(async () => {
  for (const l of opened) await l.close();
  for (const c of clients) c.disconnect();
  await server.cleanup();
});

function acquired(r: AcquireResult): Lease {
  assert.equal(r.kind, 'acquired', `expected acquired, got ${JSON.stringify(r)}`);
  if (r.kind !== 'acquired') throw new Error('unreachable');
  return r.lease;
}

/** Looks, then takes over the version it saw (the elector decides when; here: at once). */
async function takeOver(lock: LeaseLock, floor = 0): Promise<AcquireResult> {
  const look = await lock.acquire({ ...LOOK, floor });
  const ver = look.kind === 'observed' ? look.record.ver : look.kind === 'barrier' || look.kind === 'foreign' ? look.ver : null;
  assert.notEqual(ver, null, `nothing to take over: ${JSON.stringify(look)}`);
  return lock.acquire({ expectedVer: ver, floor, barrierMs: TTL });
}

/** A store where `a` leads: past the first barrier. */
async function withLeader(store: StoreUnderTest, ttlMs = TTL): Promise<{ a: LeaseLock; lease: Lease }> {
  const a = await store.lock('a', ttlMs);
  const lease = acquired(await takeOver(a));
  return { a, lease };
}

for (const impl of [fake, redis]) {
  describe(`lease store conformance: ${impl.name}`, () => {
    it('a store that never saw the key writes a data-loss barrier of at least the TTL, which can be taken over once watched', async () => {
      const store = await impl.store();
      const a = await store.lock('a');
      const first = await a.acquire({ ...LOOK, barrierMs: 3_000 });
      assert.equal(first.kind, 'barrier');
      if (first.kind !== 'barrier') return;
      assert.equal(first.reason, 'data_loss');
      assert.equal(first.ms, 3_000, 'the longest TTL the caller knows');
      assert.equal(await store.recordState(), 'barrier');
      const b = await store.lock('b');
      const seen = await b.acquire(LOOK);
      assert.equal(seen.kind, 'observed');
      if (seen.kind === 'observed') assert.equal(seen.record.state, 'barrier');
      const lease = acquired(await b.acquire({ expectedVer: first.ver, floor: 0, barrierMs: TTL }));
      assert.ok(lease.token > 0);
      assert.equal(await store.counter(), String(lease.token));
    });

    it('on a store declared brand-new, a fresh caller leads at once, and only once', async () => {
      const store = await impl.store();
      assert.equal(await store.declare(), true);
      const a = await store.lock('a');
      const lease = acquired(await a.acquire({ ...LOOK, fresh: true }));
      assert.equal(await store.recordState(), 'held');
      assert.equal(await store.counter(), String(lease.token));
      assert.ok((await store.heard()).some((h) => h.event === 'acquired' && h.token === lease.token));
      // Used up: a second fresh caller only looks.
      const b = await store.lock('b');
      const seen = await b.acquire({ ...LOOK, fresh: true });
      assert.equal(seen.kind, 'observed');
      assert.equal(await store.declare(), false, 'a store where GRINDER led is not brand-new');
    });

    it('on a store declared brand-new, a caller that is not fresh writes the data-loss barrier, which uses the declaration up', async () => {
      const store = await impl.store();
      assert.equal(await store.declare(), true);
      const a = await store.lock('a');
      const first = await a.acquire(LOOK);
      assert.equal(first.kind, 'barrier');
      const b = await store.lock('b');
      const seen = await b.acquire({ ...LOOK, fresh: true });
      assert.equal(seen.kind, 'observed', 'the barrier stands even for a fresh caller');
      if (seen.kind === 'observed') assert.equal(seen.record.state, 'barrier');
    });

    it('a declaration is not believed beside a live member that has seen a token (Redis lost a leadership): a fresh caller writes the barrier', async () => {
      const store = await impl.store();
      assert.equal(await store.declare(), true);
      const a = await store.lock('a');
      await store.registerVeteran('a'); // the caller's own registration does not count
      await store.registerVeteran('old-leader');
      const first = await a.acquire({ ...LOOK, fresh: true });
      assert.equal(first.kind, 'barrier');
      if (first.kind === 'barrier') assert.equal(first.reason, 'data_loss');
      const only = await impl.store();
      assert.equal(await only.declare(), true);
      const b = await only.lock('b');
      await only.registerVeteran('b');
      assert.equal((await b.acquire({ ...LOOK, fresh: true })).kind, 'acquired', 'its own entry alone does not stop it');
    });

    it('a declaration does not apply where a fence or counter appeared, and is refused where GRINDER left keys', async () => {
      const store = await impl.store();
      assert.equal(await store.declare(), true);
      await store.setFence('7');
      const a = await store.lock('a');
      assert.equal((await a.acquire({ ...LOOK, fresh: true })).kind, 'barrier', 'a fence means leaders wrote here');
      const other = await impl.store();
      await other.setCounter('5');
      assert.equal(await other.declare(), false, 'a counter is GRINDER data');
      const third = await impl.store();
      await third.setFence('5');
      assert.equal(await third.declare(), false, 'so is a fence');
    });

    it('hands its own leadership to a named successor, announced, which may then take it over; nobody else can hand it', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      const b = await store.lock('b');
      assert.equal((await b.handOver(lease, 'b')).kind, 'not_held', "not b's to hand over");
      const handed = await a.handOver(lease, 'b');
      assert.equal(handed.kind, 'released');
      assert.equal(await store.recordState(), 'handoff');
      assert.ok((await store.heard()).some((h) => h.event === 'handoff' && h.instanceId === 'b' && h.token === lease.token));
      const seen = await b.acquire(LOOK);
      assert.equal(seen.kind, 'observed');
      if (seen.kind !== 'observed') return;
      assert.equal(seen.record.state, 'handoff');
      assert.equal(seen.record.instanceId, 'b', 'the record names the successor');
      assert.equal((await a.renew(lease)).kind, 'lost', 'the old holder cannot renew a handed-over lease');
      assert.equal((await a.handOver(lease, 'c')).kind, 'not_held', 'nor hand it over twice');
      // The same handoff again (an earlier try timed out after it ran): answered as done, nothing written.
      assert.deepEqual(await a.handOver(lease, 'b'), { kind: 'released', ver: seen.record.ver }, 'the same handoff again is that handoff');
      assert.equal(await store.recordState(), 'handoff');
      const next = acquired(await b.acquire({ expectedVer: seen.record.ver, floor: 0, barrierMs: TTL }));
      assert.ok(next.token > lease.token);
      assert.equal((await a.handOver(lease, 'b')).kind, 'not_held', 'once the successor took it, it is not ours');
    });

    it('answers a look with the record as it stands and writes nothing', async () => {
      const store = await impl.store();
      const { lease } = await withLeader(store);
      const b = await store.lock('b');
      const r = await b.acquire(LOOK);
      assert.equal(r.kind, 'observed');
      if (r.kind !== 'observed') return;
      assert.deepEqual(
        { state: r.record.state, token: r.record.token, ttl: r.record.ttlMs, instance: r.record.instanceId, ours: r.record.ours, ver: r.record.ver },
        { state: 'held', token: lease.token, ttl: TTL, instance: 'a', ours: false, ver: lease.ver },
      );
      assert.equal(r.newest, lease.token);
    });

    it('takes over only the exact version expected: a renewal in between makes it a no-op', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      const b = await store.lock('b');
      const renewed = await a.renew(lease);
      assert.equal(renewed.kind, 'renewed');
      const stale = await b.acquire({ expectedVer: lease.ver, floor: 0, barrierMs: TTL });
      assert.equal(stale.kind, 'observed', 'the version b watched is gone');
      assert.equal((await a.renew(lease)).kind, 'renewed', 'a still leads');
      const current = await b.acquire(LOOK);
      assert.equal(current.kind, 'observed');
      if (current.kind !== 'observed') return;
      const taken = acquired(await b.acquire({ expectedVer: current.record.ver, floor: 0, barrierMs: TTL }));
      assert.ok(taken.token > lease.token, 'a takeover gets a higher token');
      const lost = await a.renew(lease);
      assert.deepEqual(lost, { kind: 'lost', found: 'held', holder: { instanceId: 'b', token: taken.token } });
    });

    it('sees its own leadership as ours', async () => {
      const store = await impl.store();
      const { a } = await withLeader(store);
      const r = await a.acquire(LOOK);
      assert.equal(r.kind === 'observed' && r.record.ours, true);
    });

    it('renews only its own leadership, writing a new version each time', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      const r1 = await a.renew(lease);
      const r2 = await a.renew(lease);
      assert.ok(r1.kind === 'renewed' && r2.kind === 'renewed');
      if (r1.kind !== 'renewed' || r2.kind !== 'renewed') return;
      assert.notEqual(r1.lease.ver, lease.ver);
      assert.notEqual(r2.lease.ver, r1.lease.ver);
      const b = await store.lock('b');
      assert.deepEqual(await b.renew(lease), { kind: 'lost', found: 'held', holder: { instanceId: 'a', token: lease.token } }, 'same token, other session');
    });

    it('a renewal finds a deleted record missing, and the next acquire writes a barrier', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      await store.deleteRecord();
      assert.deepEqual(await a.renew(lease), { kind: 'lost', found: 'missing', holder: null });
      const r = await a.acquire(LOOK);
      assert.equal(r.kind, 'barrier');
      if (r.kind === 'barrier') assert.equal(r.reason, 'record_missing');
      assert.deepEqual(await a.renew(lease), { kind: 'lost', found: 'barrier', holder: null });
    });

    it('releases only its own leadership, leaving a free record, and announces it', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      const b = await store.lock('b');
      assert.equal((await b.release(lease)).kind, 'not_held');
      assert.equal(await store.recordState(), 'held');
      const r = await a.release(lease);
      assert.equal(r.kind, 'released');
      assert.equal(await store.recordState(), 'free');
      const heard = await store.heard();
      const last = heard.at(-1);
      assert.ok(last && r.kind === 'released');
      assert.deepEqual(
        { event: last.event, ver: last.ver, token: last.token, instance: last.instanceId },
        { event: 'released', ver: r.ver, token: lease.token, instance: 'a' },
      );
      assert.deepEqual(
        heard.map((h) => h.event),
        ['barrier', 'acquired', 'released'],
        'every change is announced',
      );
      assert.equal((await a.release(lease)).kind, 'not_held', 'twice is once');
    });

    it("abandons a leadership of its own session it did not know it held, and nobody else's", async () => {
      const store = await impl.store();
      const { a } = await withLeader(store);
      const b = await store.lock('b');
      assert.equal((await b.abandon()).kind, 'not_held');
      assert.equal((await a.abandon()).kind, 'released');
      assert.equal(await store.recordState(), 'free');
    });

    it('writes a rollback barrier and raises the counter when the caller has seen a newer token than the store knows', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store);
      const b = await store.lock('b');
      const floor = lease.token + 1_000;
      const r = await b.acquire({ expectedVer: lease.ver, floor, barrierMs: TTL });
      assert.equal(r.kind, 'barrier', 'no takeover while the store is behind');
      if (r.kind === 'barrier') {
        assert.equal(r.reason, 'rollback');
        assert.equal(r.newest, floor);
      }
      assert.equal(await store.counter(), String(floor));
      const next = acquired(await takeOver(b, floor));
      assert.ok(next.token > floor);
      assert.equal((await a.renew(lease)).kind, 'lost');
    });

    for (const [what, counter] of [
      ['garbage', 'not-a-number'],
      ['above 2^53', '99999999999999999999'],
      ['just below 2^53, where no token would be left', '9007199254740991'],
      ['below the fence', '3'],
    ] as const) {
      it(`repairs a counter that is ${what}: the next token is above the fence and the counter`, async () => {
        const store = await impl.store();
        const { a, lease } = await withLeader(store);
        const fence = lease.token + 50;
        await store.setFence(String(fence));
        await store.setCounter(counter);
        assert.equal((await a.release(lease)).kind, 'released');
        const next = acquired(await takeOver(a));
        assert.ok(next.token > fence, `token ${next.token} above fence ${fence}`);
        assert.equal(await store.counter(), String(next.token), 'counter repaired');
      });
    }

    it('reports a string that is not a record as foreign, with a version it can be taken over by', async () => {
      const store = await impl.store();
      await store.setCounter('10');
      await store.setRecordString('123|abcd|someone by hand');
      const a = await store.lock('a');
      const r = await a.acquire(LOOK);
      assert.equal(r.kind, 'foreign');
      if (r.kind !== 'foreign') return;
      const again = await a.acquire(LOOK);
      assert.equal(again.kind === 'foreign' && again.ver, r.ver, 'the same string has the same version');
      const lease = acquired(await a.acquire({ expectedVer: r.ver, floor: 0, barrierMs: TTL }));
      assert.ok(lease.token > 10);
      assert.equal(await store.recordState(), 'held');
    });

    it('never overwrites a key of another Redis type', async () => {
      const store = await impl.store();
      await store.setCounter('10');
      await store.makeRecordAHash();
      const a = await store.lock('a');
      const r = await a.acquire({ expectedVer: 'anything', floor: 0, barrierMs: TTL });
      assert.equal(r.kind, 'anomaly');
      if (r.kind === 'anomaly') assert.equal(r.reason, 'wrong_type');
      assert.equal(await store.recordState(), null);
    });

    it('keeps the longest TTL of this and the previous holder, and sizes a barrier by it', async () => {
      const store = await impl.store();
      const { a, lease } = await withLeader(store, 5_000);
      assert.equal((await a.release(lease)).kind, 'released');
      const b = await store.lock('b', TTL);
      acquired(await takeOver(b));
      const look = await b.acquire(LOOK);
      assert.equal(look.kind === 'observed' && look.record.maxTtlMs, 5_000);
      await store.deleteRecord();
      const barrier = await b.acquire({ ...LOOK, barrierMs: TTL });
      assert.equal(barrier.kind === 'barrier' && barrier.ms, TTL, "once the record is gone only the caller's knowledge is left");
    });
  });
}

describe('lease store conformance: Redis only', () => {
  it("tokens are never below Redis' clock in microseconds, so a rolled-back counter cannot repeat one", async () => {
    const store = await redis.store();
    const { a, lease } = await withLeader(store);
    const [sec, usec] = await raw.time();
    const nowMicros = Number(sec) * 1e6 + Number(usec);
    assert.ok(lease.token <= nowMicros && lease.token > nowMicros - 60e6, `token ${lease.token} is Redis time in µs (${nowMicros})`);
    assert.equal((await a.release(lease)).kind, 'released');
    await store.setCounter('5'); // rolled back, and nobody passes a floor
    await store.setFence(null);
    const next = acquired(await takeOver(a));
    assert.ok(next.token > lease.token);
  });

  it('reads the eviction policy and durability at connect', async () => {
    const store = await redis.store();
    const a = await store.lock('a');
    await waitFor('facts read', () => (a.facts().maxmemoryPolicy !== null ? true : undefined));
    const { maxmemoryPolicy, durable, mode, masterChanges, replicasAcked } = a.facts();
    assert.deepEqual(
      { maxmemoryPolicy, durable, mode, masterChanges, replicasAcked },
      { maxmemoryPolicy: 'noeviction', durable: false, mode: 'standalone', masterChanges: 0, replicasAcked: null },
    );
    assert.equal(a.facts().master, `127.0.0.1:${server.port}`);
  });
});
