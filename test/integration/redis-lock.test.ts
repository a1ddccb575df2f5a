import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { LockUnavailableError, type AcquireRequest, type AcquireResult, type Lease, type LockEvent } from '../../src/ha/lock';
import { RedisLeaseLock } from '../../src/ha/redis-lock';
import { parseRedisTarget } from '../../src/redis/target';
import { FencedStream } from '../../src/live/fence';
import { loadScripts } from '../../src/redis/commands';
import { leaseKeys } from '../../src/redis/keys';
import { RedisServer } from '../../tools/kit/redis';
import { waitFor } from '../../tools/kit/time';

/* What only a real Redis shows: the script layer, fenced writes, timeouts and reconnects. */

const TTL = 5_000;
const LOOK: AcquireRequest = { expectedVer: null, floor: 0, barrierMs: TTL };
let server: RedisServer;
let raw: Redis;
const opened: RedisLeaseLock[] = [];
const clients: Redis[] = [];

function client(url = server.url): Redis {
  const c = new Redis(url);
  clients.push(c);
  return c;
}

before(async () => {
  server = await RedisServer.start();
  raw = client();
});

after(async () => {
  for (const l of opened) await l.close();
  for (const c of clients) c.disconnect();
  await server.cleanup();
});

/** A unique key per test, so tests never see each other's leases. */
function freshKey(): string {
  return `t:${randomBytes(6).toString('hex')}:lock`;
}

async function openLock(lockKey: string, instanceId: string, commandTimeoutMs = 1_000, url = server.url): Promise<RedisLeaseLock> {
  const lock = new RedisLeaseLock({
    target: parseRedisTarget(url),
    minReplicas: 'auto',
    lockKey,
    instanceId,
    session: randomBytes(8).toString('hex'),
    ttlMs: TTL,
    commandTimeoutMs,
  });
  opened.push(lock);
  await waitFor(`${instanceId} connected`, () => (lock.isConnected() ? true : undefined));
  return lock;
}

function acquired(r: AcquireResult): Lease {
  assert.equal(r.kind, 'acquired', `expected acquired, got ${JSON.stringify(r)}`);
  if (r.kind !== 'acquired') throw new Error('unreachable');
  return r.lease;
}

async function lead(lock: RedisLeaseLock): Promise<Lease> {
  const look = await lock.acquire(LOOK);
  const ver = look.kind === 'observed' ? look.record.ver : look.kind === 'barrier' ? look.ver : '';
  return acquired(await lock.acquire({ expectedVer: ver, floor: 0, barrierMs: TTL }));
}

describe('script layer', () => {
  it('loads every script with its key count from the file name and its includes expanded', () => {
    const scripts = loadScripts();
    assert.deepEqual(
      scripts.map((s) => [s.file, s.command, s.numberOfKeys]),
      [
        ['acquire-5.lua', 'grinderAcquire', 5],
        ['cluster-view-2.lua', 'grinderClusterView', 2],
        ['declare-4.lua', 'grinderDeclare', 4],
        ['fenced-append-4.lua', 'grinderFencedAppend', 4],
        ['handoff-1.lua', 'grinderHandoff', 1],
        ['heartbeat-3.lua', 'grinderHeartbeat', 3],
        ['leave-3.lua', 'grinderLeave', 3],
        ['release-1.lua', 'grinderRelease', 1],
        ['release-session-1.lua', 'grinderReleaseSession', 1],
        ['renew-1.lua', 'grinderRenew', 1],
      ],
    );
    for (const s of scripts) {
      assert.ok(!s.lua.includes('@include'), `${s.file}: includes expanded`);
      // Every script that reads the lease record parses it with the one shared parser.
      if (/redis\.call\('GET', lockKey\)/.test(s.lua)) assert.ok(s.lua.includes('local function parseRecord'), `${s.file}: shares the record parser`);
      assert.match(s.lua, /Input:[\s\S]*KEYS\[1\][\s\S]*Output:/, `${s.file}: header lists KEYS, ARGV and the replies`);
    }
  });

  it("puts every derived key in the lock key's Cluster hash slot", () => {
    const { member, ...named } = leaseKeys('grinder:leader:lock');
    assert.deepEqual(named, {
      record: 'grinder:leader:lock',
      counter: '{grinder:leader:lock}:token',
      fence: '{grinder:leader:lock}:fence',
      events: '{grinder:leader:lock}:events',
      liveStream: '{grinder:leader:lock}:live',
      members: '{grinder:leader:lock}:members',
      veterans: '{grinder:leader:lock}:veterans',
      init: '{grinder:leader:lock}:init',
    });
    assert.equal(member('grinder-1'), '{grinder:leader:lock}:member:grinder-1');
    assert.equal(leaseKeys('{app}:lock').counter, '{app}:lock:token', 'an existing hash tag is kept');
  });
});

describe('fenced-append-4.lua', () => {
  it('accepts writes with the newest token and rejects older ones', async () => {
    const key = freshKey();
    const keys = leaseKeys(key);
    const stream = new FencedStream(raw, { streamKey: keys.liveStream, keys, maxLen: 1_000 });
    assert.equal((await stream.append(5, { seq: 1 })).accepted, true, 'nothing issued yet: the fence alone decides');
    assert.equal((await stream.append(7, { seq: 2 })).accepted, true);
    assert.equal((await stream.append(7, { seq: 3 })).accepted, true, 'the same leadership may write again');
    assert.deepEqual(await stream.append(6, { seq: 4 }), { accepted: false, newestToken: 7 });
    const entries = await raw.xrange(stream.streamKey, '-', '+');
    assert.deepEqual(
      entries.map(([, f]) => f),
      [
        ['token', '5', 'seq', '1'],
        ['token', '7', 'seq', '2'],
        ['token', '7', 'seq', '3'],
      ],
    );
    assert.equal(await raw.get(keys.fence), '7');
  });

  it('rejects an old leader once a newer token was issued, before the new leader wrote anything', async () => {
    const key = freshKey();
    const keys = leaseKeys(key);
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const stream = new FencedStream(raw, { streamKey: keys.liveStream, keys, maxLen: 1_000 });
    const old = await lead(a);
    assert.equal((await stream.append(old.token, { seq: 1 })).accepted, true);
    const look = await b.acquire(LOOK); // b watched a's version long enough (a is paused)
    const newer = acquired(await b.acquire({ expectedVer: look.kind === 'observed' ? look.record.ver : '', floor: 0, barrierMs: TTL }));
    assert.deepEqual(await stream.append(old.token, { seq: 2 }), { accepted: false, newestToken: newer.token });
    assert.equal((await stream.append(newer.token, { seq: 1 })).accepted, true);
    assert.equal(await raw.xlen(stream.streamKey), 2);
  });

  it('keeps writing through a corrupt or deleted counter: the record and the fence still hold the newest token', async () => {
    const key = freshKey();
    const keys = leaseKeys(key);
    const a = await openLock(key, 'a');
    const stream = new FencedStream(raw, { streamKey: keys.liveStream, keys, maxLen: 1_000 });
    const lease = await lead(a);
    for (const counter of ['garbage', '99999999999999999999', '9007199254740991']) {
      await raw.set(keys.counter, counter);
      assert.equal((await stream.append(lease.token, { seq: counter })).accepted, true, `counter ${counter}`);
    }
    // A fence no GRINDER token can reach is garbage too: writes go on, and the first repairs it.
    await raw.set(keys.fence, '9007199254740991');
    assert.equal((await stream.append(lease.token, { seq: 'huge fence' })).accepted, true, 'a fence just below 2^53 does not stop the leader');
    assert.equal(await raw.get(keys.fence), String(lease.token), 'the fence was repaired');
    await raw.del(keys.counter, keys.fence);
    assert.deepEqual(
      await stream.append(lease.token - 1, { seq: 'stale' }),
      { accepted: false, newestToken: lease.token },
      'the record still names the newest token',
    );
  });
});

describe('RedisLeaseLock on a real Redis', () => {
  it('a node that is not the master (READONLY) is a lock failure with reason failover, and the client looks for the master again', async () => {
    const replica = await RedisServer.start({ extraArgs: ['--replicaof', '127.0.0.1', String(server.port)] });
    try {
      const lock = await openLock(freshKey(), 'on-a-replica', 1_000, replica.url);
      const events: LockEvent['kind'][] = [];
      lock.subscribe((e) => events.push(e.kind));
      const err = await lock.acquire(LOOK).then(
        () => assert.fail('an acquire on a read-only replica must fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof LockUnavailableError, String(err));
      assert.equal(err.reason, 'failover');
      assert.match(err.message, /READONLY/);
      // reconnectOnError: the READONLY reply drops the connection so that Sentinel can name the master.
      await waitFor('the reconnect after READONLY', () => (events.includes('disconnected') ? true : undefined), 2_000);
    } finally {
      await replica.cleanup();
    }
  });

  it('announces every change on the events channel to the other replicas', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const events: LockEvent[] = [];
    b.subscribe((e) => events.push(e));
    await waitFor('b subscribed', async () => ((await raw.pubsub('NUMSUB', leaseKeys(key).events))[1] === 2 ? true : undefined));
    const lease = await lead(a);
    const renewed = await a.renew(lease);
    assert.equal(renewed.kind, 'renewed');
    await a.release(renewed.kind === 'renewed' ? renewed.lease : lease);
    await waitFor('announcements', () => (events.filter((e) => e.kind === 'announcement').length >= 4 ? true : undefined));
    assert.deepEqual(
      events.flatMap((e) => (e.kind === 'announcement' ? [e.announcement.event] : [])),
      ['barrier', 'acquired', 'renewed', 'released'],
    );
  });

  it('frees a leadership a late acquire took after its caller gave up: a slow link does not keep the lease held', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a', 100);
    const b = await openLock(key, 'b');
    const lease = await lead(b);
    assert.equal((await b.release(lease)).kind, 'released');
    const look = await a.acquire(LOOK);
    assert.equal(look.kind, 'observed');
    const pauser = client();
    try {
      // a's takeover reaches Redis only after a's client gave up on it. Both of a's calls must be
      // sent and time out (100 ms each) inside the pause, with room for a busy event loop.
      await pauser.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      await assert.rejects(
        a.acquire({ expectedVer: look.kind === 'observed' ? look.record.ver : '', floor: 0, barrierMs: TTL }),
        (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout',
      );
      await assert.rejects(a.abandon(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout');
      await waitFor(
        'the late takeover to be freed',
        async () => {
          const r = await b.acquire(LOOK);
          return r.kind === 'observed' && r.record.state === 'free' && r.record.instanceId === 'a' ? true : undefined;
        },
        5_000,
        50,
      );
    } finally {
      pauser.disconnect();
    }
  });

  it('fails fast with reason timeout when Redis does not answer in time', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a', 100);
    const pauser = client();
    await pauser.call('CLIENT', 'PAUSE', '600', 'ALL');
    const started = performance.now();
    await assert.rejects(a.acquire(LOOK), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout');
    assert.ok(performance.now() - started < 550, 'bounded by the command timeout, not by the pause');
    await new Promise((r) => setTimeout(r, 700));
  });

  it('fails at once with reason connection while Redis is down, says disconnected, and connected when it is back', async () => {
    const own = await RedisServer.start();
    try {
      const lock = await openLock(freshKey(), 'a', 200, own.url);
      const events: string[] = [];
      lock.subscribe((e) => events.push(e.kind));
      await own.stop();
      await waitFor('disconnect noticed', () => (lock.isConnected() ? undefined : true));
      assert.ok(events.includes('disconnected'));
      const started = performance.now();
      await assert.rejects(lock.acquire(LOOK), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'connection');
      assert.ok(performance.now() - started < 100, 'nothing queued while disconnected');
      await own.startProcess();
      await waitFor('reconnected', () => (events.includes('connected') && lock.isConnected() ? true : undefined), 5_000);
      assert.equal((await lock.acquire(LOOK)).kind, 'barrier', 'works again (a fresh Redis: barrier first)');
    } finally {
      await own.cleanup();
    }
  });

  it('reports a durable Redis as durable, and an evicting one by its policy', async () => {
    const own = await RedisServer.start({ persistent: true, extraArgs: ['--maxmemory', '64mb', '--maxmemory-policy', 'volatile-lru'] });
    try {
      const lock = await openLock(freshKey(), 'a', 500, own.url);
      await waitFor('facts', () => (lock.facts().maxmemoryPolicy !== null ? true : undefined));
      assert.equal(lock.facts().maxmemoryPolicy, 'volatile-lru');
      assert.equal(lock.facts().durable, true);
    } finally {
      await own.cleanup();
    }
  });
});
