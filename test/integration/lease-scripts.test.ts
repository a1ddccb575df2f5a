import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { LockUnavailableError, type AcquireResult, type Lease } from '../../src/ha/lock';
import { counterKeyFor, RedisLeaseLock, releaseChannelFor } from '../../src/ha/redis-lock';
import { FencedStream, fenceKeyFor } from '../../src/live/fence';
import { RedisServer } from '../support/redis';
import { waitFor } from '../support/wait';

const TTL = 5_000;
let server: RedisServer;
let raw: Redis;
const opened: RedisLeaseLock[] = [];
const clients: Redis[] = [];

/** A raw client that after() closes even when the test fails half-way (an open socket would keep the file from ending). */
function client(): Redis {
  const c = new Redis(server.url);
  clients.push(c);
  return c;
}

before(async () => {
  server = await RedisServer.start();
  raw = new Redis(server.url);
});

after(async () => {
  for (const l of opened) await l.close();
  for (const c of clients) c.disconnect();
  raw.disconnect();
  await server.cleanup();
});

/** A unique key per test, so tests never see each other's leases. */
function freshKey(): string {
  return `t:${randomBytes(6).toString('hex')}:lock`;
}

async function openLock(lockKey: string, instanceId: string, commandTimeoutMs = 1_000): Promise<RedisLeaseLock> {
  const lock = new RedisLeaseLock({
    redisUrl: server.url,
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

/** Gets past the first-ever barrier the way time would: by letting the barrier key go. */
async function pastBarrier(lock: RedisLeaseLock): Promise<Lease> {
  const first = await lock.acquire();
  assert.equal(first.kind, 'barrier');
  await raw.del(lock.lockKey);
  return acquired(await lock.acquire());
}

describe('acquire-2.lua', () => {
  it('on a Redis that never saw this key: seeds the counter from TIME and holds everyone off for one TTL', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const before = Date.now() * 1000;
    const r = await a.acquire();
    assert.equal(r.kind, 'barrier');
    if (r.kind === 'barrier') assert.equal(r.remainingMs, TTL);
    const seed = Number(await raw.get(counterKeyFor(key)));
    assert.ok(Math.abs(seed - before) < 2_000_000, `counter ${seed} seeded from the server clock in µs (~${before})`);
    assert.ok(Number.isSafeInteger(seed));
    assert.equal(await raw.get(key), `barrier|${seed}`);
    const pttl = await raw.pttl(key);
    assert.ok(pttl > TTL - 500 && pttl <= TTL, `barrier PTTL ${pttl}`);
    const again = await a.acquire();
    assert.equal(again.kind, 'barrier', 'the barrier also holds off the replica that set it');
  });

  it('grants the lease with token counter+1, the lease value and PTTL = TTL', async () => {
    const key = freshKey();
    const a = await openLock(key, 'replica-a');
    const lease = await pastBarrier(a);
    const counter = Number(await raw.get(counterKeyFor(key)));
    assert.equal(lease.token, counter);
    assert.equal(await raw.get(key), lease.value);
    assert.match(lease.value, new RegExp(`^${lease.token}\\|[0-9a-f]{16}\\|replica-a$`));
    const pttl = await raw.pttl(key);
    assert.ok(pttl > TTL - 500 && pttl <= TTL, `PTTL ${pttl}`);
  });

  it('answers held, with the holder and its remaining time, to another replica', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const lease = await pastBarrier(a);
    const r = await b.acquire();
    assert.equal(r.kind, 'held');
    if (r.kind === 'held') {
      assert.deepEqual(r.holder, { instanceId: 'a', token: lease.token });
      assert.ok(r.remainingMs > TTL - 500 && r.remainingMs <= TTL);
    }
    assert.equal(await raw.get(key), lease.value, 'untouched');
  });

  it('replaces its own session leftover with a new leadership and a higher token', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const first = await pastBarrier(a);
    const second = acquired(await a.acquire());
    assert.ok(second.token > first.token);
    assert.equal(await raw.get(key), second.value);
  });

  it('hands out strictly increasing tokens, also across a restart that lost all data', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const tokens: number[] = [(await pastBarrier(a)).token];
    for (let i = 0; i < 20; i++) {
      const [from, to] = i % 2 === 0 ? [a, b] : [b, a];
      const current = { token: tokens.at(-1) ?? 0, value: (await raw.get(key)) ?? '' };
      assert.equal((await from.release(current)).kind, 'released');
      tokens.push(acquired(await to.acquire()).token);
    }
    await raw.flushall(); // Redis came back empty
    const barrier = await a.acquire();
    assert.equal(barrier.kind, 'barrier', 'data loss puts the barrier up');
    await raw.del(key);
    tokens.push(acquired(await b.acquire()).token);
    for (let i = 1; i < tokens.length; i++) {
      assert.ok((tokens[i] as number) > (tokens[i - 1] as number), `token ${i}: ${tokens[i]} > ${tokens[i - 1]}`);
    }
  });

  it('treats a key of the wrong type as held by someone else and leaves it alone', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    await raw.hset(key, 'x', '1');
    const r = await a.acquire();
    assert.equal(r.kind, 'anomaly');
    if (r.kind === 'anomaly') assert.equal(r.reason, 'wrong_type');
    assert.equal(await raw.type(key), 'hash');
    const renew = await a.renew({ token: 1, value: `1|abcd|a` });
    assert.equal(renew.kind, 'anomaly');
    assert.equal((await a.release({ token: 1, value: '1|abcd|a' })).kind, 'not_held');
    assert.equal(await raw.hget(key, 'x'), '1');
  });

  it('treats a garbage string as held by someone else and leaves it alone', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    await raw.set(key, 'hello world', 'PX', 60_000);
    const r = await a.acquire();
    assert.equal(r.kind, 'anomaly');
    if (r.kind === 'anomaly') {
      assert.equal(r.reason, 'invalid_value');
      assert.ok(r.remainingMs > 50_000);
    }
    assert.equal(await raw.get(key), 'hello world');
  });

  it('reports a corrupted fencing counter as a script error, not as a lease', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    await raw.set(counterKeyFor(key), 'not-a-number');
    await assert.rejects(a.acquire(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'script_error');
    assert.equal(await raw.exists(key), 0, 'nothing was granted');
  });
});

describe('renew-1.lua', () => {
  it('extends only our own lease, back to the full TTL', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const lease = await pastBarrier(a);
    await raw.pexpire(key, 1_000);
    assert.equal((await a.renew(lease)).kind, 'renewed');
    const pttl = await raw.pttl(key);
    assert.ok(pttl > TTL - 500, `PTTL back to ~TTL: ${pttl}`);
  });

  it('answers lost (with the new holder) once another replica holds the key, and changes nothing', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const old = await pastBarrier(a);
    await raw.del(key); // a's lease expired
    const gone = await a.renew(old);
    assert.deepEqual(gone, { kind: 'lost', holder: null, remainingMs: 0 });
    const newer = acquired(await b.acquire());
    const r = await a.renew(old);
    assert.equal(r.kind, 'lost');
    if (r.kind === 'lost') assert.deepEqual(r.holder, { instanceId: 'b', token: newer.token });
    assert.equal(await raw.get(key), newer.value);
  });

  it('answers lost during the data-loss barrier', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const lease = await pastBarrier(a);
    await raw.flushall();
    assert.equal((await a.acquire()).kind, 'barrier');
    const r = await a.renew(lease);
    assert.equal(r.kind, 'lost');
  });
});

describe('release-1.lua', () => {
  it('deletes only our own lease and announces it on the release channel', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const events: string[] = [];
    b.subscribe((e) => events.push(e));
    const lease = await pastBarrier(a);
    const sub = client();
    const heard: string[] = [];
    await sub.subscribe(releaseChannelFor(key));
    sub.on('message', (_ch: string, msg: string) => heard.push(msg));
    assert.equal((await b.release({ token: lease.token, value: `${lease.token}|00|b` })).kind, 'not_held');
    assert.equal(await raw.get(key), lease.value);
    assert.equal((await a.release(lease)).kind, 'released');
    assert.equal(await raw.exists(key), 0);
    await waitFor('the release announcement', () => (heard.length > 0 && events.includes('released') ? true : undefined));
    assert.deepEqual(heard, [lease.value]);
    sub.disconnect();
  });
});

describe('release-session-1.lua', () => {
  it("deletes a lease of this session that it did not know it held, and nobody else's", async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    assert.equal((await a.abandon()).kind, 'not_held', 'nothing there');
    const lease = await pastBarrier(a);
    assert.equal((await b.abandon()).kind, 'not_held', "b cannot abandon a's lease");
    assert.equal(await raw.get(key), lease.value);
    assert.equal((await a.abandon()).kind, 'released');
    assert.equal(await raw.exists(key), 0);
    acquired(await b.acquire());
  });

  it('runs right after a late acquire on the same connection: a slow link does not keep the lease held', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a', 100);
    const b = await openLock(key, 'b');
    await pastBarrier(b);
    assert.equal((await b.release({ token: Number(await raw.get(counterKeyFor(key))), value: (await raw.get(key)) ?? '' })).kind, 'released');
    // a's acquire reaches Redis only after a's client gave up on it.
    const pauser = client();
    try {
      await pauser.call('CLIENT', 'PAUSE', '300', 'WRITE');
      await assert.rejects(a.acquire(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout');
      await assert.rejects(a.abandon(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout');
      await waitFor('b to acquire once the paused commands ran', async () => ((await b.acquire()).kind === 'acquired' ? true : undefined), 3_000, 50);
    } finally {
      pauser.disconnect();
    }
  });
});

describe('fenced-append-3.lua', () => {
  it('accepts writes with the newest token and rejects older ones', async () => {
    const prefix = `t:${randomBytes(6).toString('hex')}`;
    const stream = new FencedStream(raw, { streamKey: `${prefix}:live`, issuedTokenKey: `${prefix}:token`, maxLen: 1_000 });
    assert.equal((await stream.append(5, { seq: 1 })).accepted, true, 'no issued counter yet: the fence alone decides');
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
    assert.equal(await raw.get(fenceKeyFor(stream.streamKey)), '7');
  });

  it('rejects an old leader once a newer token was issued, before the new leader wrote anything', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a');
    const b = await openLock(key, 'b');
    const stream = new FencedStream(raw, { streamKey: `${key}:live`, issuedTokenKey: counterKeyFor(key), maxLen: 1_000 });
    const old = await pastBarrier(a);
    assert.equal((await stream.append(old.token, { seq: 1 })).accepted, true);
    await raw.del(key); // a's lease expired while a was paused
    const newer = acquired(await b.acquire());
    assert.deepEqual(await stream.append(old.token, { seq: 2 }), { accepted: false, newestToken: newer.token });
    assert.equal((await stream.append(newer.token, { seq: 1 })).accepted, true);
    assert.equal(await raw.xlen(stream.streamKey), 2);
  });
});

describe('RedisLeaseLock connection handling', () => {
  it('fails fast with reason timeout when Redis does not answer in time', async () => {
    const key = freshKey();
    const a = await openLock(key, 'a', 100);
    const pauser = client();
    await pauser.call('CLIENT', 'PAUSE', '600', 'ALL');
    const started = Date.now();
    await assert.rejects(a.acquire(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'timeout');
    assert.ok(Date.now() - started < 550, 'bounded by the command timeout, not by the pause');
    await new Promise((r) => setTimeout(r, 700));
    pauser.disconnect();
  });

  it('fails at once with reason connection while Redis is down, and says connected when it is back', async () => {
    const own = await RedisServer.start();
    try {
      const lock = new RedisLeaseLock({ redisUrl: own.url, lockKey: freshKey(), instanceId: 'a', session: 'ab12', ttlMs: TTL, commandTimeoutMs: 200 });
      opened.push(lock);
      await waitFor('connected', () => (lock.isConnected() ? true : undefined));
      const events: string[] = [];
      lock.subscribe((e) => events.push(e));
      await own.stop();
      await waitFor('disconnect noticed', () => (lock.isConnected() ? undefined : true));
      const started = Date.now();
      await assert.rejects(lock.acquire(), (err: unknown) => err instanceof LockUnavailableError && err.reason === 'connection');
      assert.ok(Date.now() - started < 100, 'nothing queued while disconnected');
      await own.startProcess();
      await waitFor('reconnected', () => (events.includes('connected') ? true : undefined), 5_000);
      assert.equal((await lock.acquire()).kind, 'barrier', 'works again (a fresh Redis: barrier first)');
    } finally {
      await own.cleanup();
    }
  });
});
