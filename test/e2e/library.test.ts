// The library's supervisor rules (src/index.ts, createElector), with real Redis: two electors in
// this process, each with its own Redis connections and session, compete for one lock key as two
// replicas would. What is checked is what a replica on another host would see: the lease record in
// Redis and the roles, with their timing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  createElector,
  InvalidOptionError,
  type Elector,
  type ElectorLogger,
  type ElectorOptions,
  type Fence,
  type LeaderWork,
  type Role,
} from '../../src/index';
import { runCommand } from '../../tools/kit/command';
import { freePort } from '../../tools/kit/ports';
import { RedisServer } from '../../tools/kit/redis';
import { REPO_ROOT } from '../../tools/kit/replica';
import { sleep, waitFor } from '../../tools/kit/time';

/** A short lease for the rules that are about roles only. */
const FAST = { ttlMs: 1_000, renewIntervalMs: 250 };
/** For the bounds: long enough that a 1 s wait for the work fits well inside the lease and the stop grace (2 s). */
const SLOW = { ttlMs: 3_000, renewIntervalMs: 600 };

interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string | undefined;
}

interface Replica {
  elector: Elector;
  logs: LogLine[];
  changes: { from: Role; to: Role; at: number }[];
}

/** The lease record as Redis holds it: `2|<state>|<ver>|<token>|<ttl>|<maxttl>|<session>|<instance id>`. */
interface RecordSeen {
  state: string;
  ver: string;
  token: number;
  holder: string;
}

let server: RedisServer;
let raw: Redis;
const electors: Elector[] = [];
let keySeq = 0;

before(async () => {
  server = await RedisServer.start();
  raw = new Redis(server.url);
});

after(async () => {
  await Promise.all(electors.map((e) => e.stop()));
  raw.disconnect();
  await server.cleanup();
});

function capture(into: LogLine[]): ElectorLogger {
  const line =
    (level: LogLine['level']) =>
    (fields: object, msg?: string): void => {
      into.push({ level, fields: { ...fields }, msg });
    };
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}

function replica(instanceId: string, opts: Partial<ElectorOptions> & { lockKey: string }): Replica {
  const logs: LogLine[] = [];
  const changes: Replica['changes'] = [];
  const elector = createElector({
    redisUrl: server.url,
    instanceId,
    logger: capture(logs),
    onRoleChange: (c) => changes.push({ ...c, at: Date.now() }),
    ...opts,
  });
  electors.push(elector);
  return { elector, logs, changes };
}

function freshKey(name: string): string {
  keySeq += 1;
  return `lib-test:${name}:${keySeq}`;
}

async function record(lockKey: string): Promise<RecordSeen | null> {
  const text = await raw.get(lockKey);
  if (text === null) return null;
  const f = text.split('|');
  return { state: f[1] ?? '', ver: f[2] ?? '', token: Number(f[3]), holder: f[7] ?? '' };
}

/** Resolves with the time the elector was first seen in `role`. */
function becomes(r: Replica, role: Role, timeoutMs = 8_000): Promise<number> {
  return waitFor(`${r.elector.instanceId} to be ${role}`, () => (r.elector.role() === role ? Date.now() : undefined), timeoutMs, 5);
}

/** A promise the test resolves when it wants the work to end. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Work that runs until its signal fires, as well-behaved work does. */
const untilAborted: LeaderWork = (ctx) => new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));

describe('createElector: the supervisor rules of run(work), against a real Redis', () => {
  it('work that throws makes its replica resign (logged as an error), and the other takes over at once with a higher token', async () => {
    const lockKey = freshKey('throws');
    const fail = gate();
    const a = replica('lib-a', { lockKey, ...FAST });
    let aToken = 0;
    a.elector.run(async (ctx) => {
      aToken = ctx.token;
      await fail.promise;
      throw new Error('boom');
    });
    await becomes(a, 'active');
    const b = replica('lib-b', { lockKey, ...FAST });
    let bToken = 0;
    b.elector.run((ctx) => {
      bToken = ctx.token;
      return untilAborted(ctx);
    });
    await becomes(b, 'standby');
    await sleep(300);
    assert.equal(b.elector.role(), 'standby', 'the other waits while the first leads');

    const thrownAt = Date.now();
    fail.open();
    await becomes(a, 'standby', 1_000);
    const bActiveAt = await becomes(b, 'active', 2_000);
    assert.ok(bActiveAt - thrownAt < 600, `the lease was released once the work ended: took over after ${bActiveAt - thrownAt} ms`);
    assert.ok(bToken > aToken, `the new leadership has a higher token (${bToken} > ${aToken})`);
    assert.ok(
      a.logs.some((l) => l.level === 'error' && l.msg === 'leader work failed' && l.fields.err instanceof Error && l.fields.err.message === 'boom'),
      'the failure is logged at error level with the error',
    );
    const change = a.logs.find((l) => l.msg === 'role changed' && l.fields.to === 'standby' && l.fields.from === 'active');
    assert.equal(change?.fields.reason, 'resigned: leader work failed: boom');
    assert.equal(change?.fields.lock_key, lockKey, 'election lines carry the lock key through the user logger');
    assert.equal((await record(lockKey))?.holder, 'lib-b');
  });

  it('work that returns while still leading makes the replica resign too', async () => {
    const lockKey = freshKey('returns');
    const done = gate();
    const a = replica('lib-ret-a', { lockKey, ...FAST });
    a.elector.run(() => done.promise);
    await becomes(a, 'active');
    const b = replica('lib-ret-b', { lockKey, ...FAST });
    b.elector.run(untilAborted);
    await becomes(b, 'standby');
    done.open();
    await becomes(a, 'standby', 1_000);
    await becomes(b, 'active', 2_000);
    const change = a.logs.find((l) => l.msg === 'role changed' && l.fields.from === 'active');
    assert.equal(change?.fields.reason, 'resigned: leader work returned');
  });

  it('a replica whose work keeps failing backs off longer each time before leading again', async () => {
    const lockKey = freshKey('backoff');
    const a = replica('lib-backoff', { lockKey, ...FAST });
    let runs = 0;
    a.elector.run(async () => {
      runs += 1;
      await sleep(20);
      throw new Error(`failure ${runs}`);
    });
    await waitFor('four leaderships', () => (a.changes.filter((c) => c.to === 'active').length >= 4 ? true : undefined), 10_000);
    // Resignation i (1-based) backs off min(TTL, renew interval × 2^(i-1)) before the next attempt.
    const gaps: number[] = [];
    for (let i = 0; i + 1 < a.changes.length; i++) {
      const c = a.changes[i];
      const next = a.changes[i + 1];
      if (c?.from === 'active' && c.to === 'standby' && next?.to === 'active') gaps.push(next.at - c.at);
    }
    assert.ok(gaps.length >= 3, `three gaps between leaderships: ${JSON.stringify(a.changes)}`);
    const expected = [250, 500, 1_000];
    gaps.slice(0, 3).forEach((gap, i) => {
      const least = expected[i] ?? 0;
      assert.ok(gap >= least - 30 && gap < least + 400, `gap ${i + 1} is ${gap} ms, expected about ${least} ms (all: ${gaps.join(', ')})`);
    });
  });

  it('one work at a time: after a resignation, work that ignores its signal keeps the replica from leading again until it ends', async () => {
    const lockKey = freshKey('one-at-a-time');
    const a = replica('lib-one', { lockKey, ...FAST });
    const release = gate();
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    let endedAt = 0;
    a.elector.run(async (ctx) => {
      calls += 1;
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      try {
        if (calls === 1) {
          await sleep(100);
          ctx.resign('testing');
          // Ignores the signal: the back-off (250 ms) passes long before this ends.
          await release.promise;
          endedAt = Date.now();
        } else {
          await untilAborted(ctx);
        }
      } finally {
        running -= 1;
      }
    });
    await becomes(a, 'active');
    await becomes(a, 'standby', 1_000);
    await sleep(1_200);
    assert.equal(a.elector.role(), 'standby', 'no second leadership while the first work still runs');
    assert.equal(calls, 1);
    release.open();
    const again = await becomes(a, 'active', 2_000);
    assert.ok(again - endedAt < 500, `leads again at once when the work has ended (${again - endedAt} ms)`);
    assert.equal(calls, 2);
    assert.equal(maxRunning, 1, 'never two runs at once');
  });

  it('stop() with work that ignores the signal: the lease stays held (not renewed) until the work ends, then is released and the other takes over at once', async () => {
    const lockKey = freshKey('stop-waits');
    const a = replica('lib-slow-a', { lockKey, ...SLOW });
    const finish = gate();
    let aborted = false;
    a.elector.run(async (ctx) => {
      ctx.signal.addEventListener('abort', () => (aborted = true));
      await finish.promise;
    });
    await becomes(a, 'active');
    const b = replica('lib-slow-b', { lockKey, ...SLOW });
    b.elector.run(untilAborted);
    await becomes(b, 'standby');
    await sleep(200);

    const stopped = a.elector.stop();
    await becomes(a, 'standby', 500);
    assert.ok(aborted, 'the signal fired');
    const held = await record(lockKey);
    assert.equal(held?.state, 'held');
    assert.equal(held?.holder, 'lib-slow-a');
    await sleep(1_000);
    assert.equal(b.elector.role(), 'standby', 'nobody else leads while the work runs');
    const still = await record(lockKey);
    assert.deepEqual(still, held, 'the record still names the old holder, and it was not renewed meanwhile');

    const endedAt = Date.now();
    finish.open();
    await stopped;
    const bActiveAt = await becomes(b, 'active', 2_000);
    assert.ok(bActiveAt - endedAt < 500, `released when the work ended: the other led ${bActiveAt - endedAt} ms later`);
    assert.ok(a.logs.some((l) => l.msg === 'lease released on shutdown'));
  });

  it('resign() with work that ignores the signal: released when the work ends, not before', async () => {
    const lockKey = freshKey('resign-waits');
    const a = replica('lib-res-a', { lockKey, ...SLOW });
    const finish = gate();
    let resign = (): void => undefined;
    a.elector.run(async (ctx) => {
      resign = () => ctx.resign('handing over');
      await finish.promise;
    });
    await becomes(a, 'active');
    const b = replica('lib-res-b', { lockKey, ...SLOW });
    b.elector.run(untilAborted);
    await becomes(b, 'standby');
    await sleep(200);
    resign();
    assert.equal(a.elector.role(), 'standby');
    await sleep(1_000);
    assert.equal(b.elector.role(), 'standby', 'nobody else leads while the resigned work runs');
    assert.equal((await record(lockKey))?.holder, 'lib-res-a');
    const endedAt = Date.now();
    finish.open();
    const bActiveAt = await becomes(b, 'active', 2_000);
    assert.ok(bActiveAt - endedAt < 500, `the other led ${bActiveAt - endedAt} ms after the work ended`);
  });

  it('stop() with work that never ends: gives up after the stop grace without releasing, and the other takes over one TTL after the last renewal', async () => {
    const lockKey = freshKey('never-ends');
    const a = replica('lib-stuck-a', { lockKey, ...SLOW });
    a.elector.run(() => new Promise<void>(() => undefined));
    await becomes(a, 'active');
    const b = replica('lib-stuck-b', { lockKey, ...SLOW });
    b.elector.run(untilAborted);
    await becomes(b, 'standby');

    // When each record version was first seen: the last renewal is the last change before B's.
    const versions: { ver: string; at: number; holder: string }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const r = await record(lockKey);
        if (r && versions.at(-1)?.ver !== r.ver) versions.push({ ver: r.ver, at: Date.now(), holder: r.holder });
        await sleep(10);
      }
    })();

    await sleep(300);
    const stopAt = Date.now();
    await a.elector.stop();
    const stopTook = Date.now() - stopAt;
    assert.ok(stopTook >= 1_900 && stopTook < 2_800, `stop() waited for the 2 s grace, then gave up: ${stopTook} ms`);
    assert.equal((await record(lockKey))?.holder, 'lib-stuck-a', 'not released: the work may still be writing');
    assert.equal(b.elector.role(), 'standby');
    assert.ok(a.logs.some((l) => l.level === 'warn' && /did not end within the stop grace/.test(l.msg ?? '')));

    const bActiveAt = await becomes(b, 'active', 5_000);
    watching = false;
    await watcher;
    const lastOfA = versions.filter((v) => v.holder === 'lib-stuck-a').at(-1);
    assert.ok(lastOfA, 'saw the old holder’s record');
    const waited = bActiveAt - lastOfA.at;
    assert.ok(waited >= SLOW.ttlMs - 60, `took over ${waited} ms after the last renewal, not before one TTL (${SLOW.ttlMs} ms)`);
    assert.ok(waited < SLOW.ttlMs + 1_000, `took over ${waited} ms after the last renewal: within about one TTL`);
  });

  it("fenced appends: accepted with the current token; the old leadership's handle is rejected once a newer one exists", async () => {
    const lockKey = freshKey('fence');
    const stream = `{${lockKey}}:events`;
    const a = replica('lib-fence-a', { lockKey, ...FAST });
    const handles: Fence[] = [];
    const proceed = gate();
    a.elector.run(async (ctx) => {
      handles.push(ctx.fence);
      assert.equal(ctx.fence.key('events'), stream, "fence.key() puts a name into the lock key's slot");
      const r = await ctx.fence.append(stream, { n: 1, by: ctx.instanceId });
      assert.equal(r.accepted, true);
      await proceed.promise;
      // Leaves the leadership but keeps the handle, like a paused ex-leader that wakes up later.
      ctx.resign('testing the fence');
    });
    await becomes(a, 'active');
    const b = replica('lib-fence-b', { lockKey, ...FAST });
    let bToken = 0;
    b.elector.run(async (ctx) => {
      bToken = ctx.token;
      const r = await ctx.fence.append(stream, { n: 2, by: ctx.instanceId }, { maxLen: 100 });
      assert.equal(r.accepted, true);
      await untilAborted(ctx);
    });
    await becomes(b, 'standby');
    proceed.open();
    await becomes(b, 'active', 2_000);
    await waitFor('the new leader to write', async () => ((await raw.xlen(stream)) === 2 ? true : undefined));
    const old = handles[0];
    assert.ok(old);
    assert.ok(old.token < bToken);
    assert.deepEqual(await old.append(stream, { n: 3 }), { accepted: false, newestToken: bToken });
    const entries = await raw.xrange(stream, '-', '+');
    assert.deepEqual(
      entries.map(([, fields]) => fields.slice(0, 4)),
      [
        ['token', String(old.token), 'n', '1'],
        ['token', String(bToken), 'n', '2'],
      ],
      'the rejected write left no entry',
    );
    await assert.rejects(old.append('', { n: 1 }), /the stream key must be a non-empty string/);
    await assert.rejects(old.append(stream, { n: 1 }, { maxLen: 0 }), /maxLen must be a whole number from 1 to 100000000/);
    await assert.rejects(old.append(stream, { n: null } as unknown as Record<string, string>), /field "n" is null/);
  });

  it('run() twice throws, and so does run() after stop()', async () => {
    const lockKey = freshKey('twice');
    const a = replica('lib-twice', { lockKey, ...FAST });
    a.elector.run(untilAborted);
    assert.throws(() => a.elector.run(untilAborted), /run\(\) was already called on this elector/);
    const b = replica('lib-twice-b', { lockKey, ...FAST });
    await b.elector.stop();
    assert.throws(() => b.elector.run(untilAborted), /run\(\) after stop\(\)/);
    const c = replica('lib-twice-c', { lockKey, ...FAST });
    assert.throws(() => c.elector.run('work' as unknown as LeaderWork), /run\(work\) needs a function/);
    await c.elector.stop();
  });

  it('stop() while Redis cannot be reached lets the program exit at once, not 2 s later', async () => {
    const port = await freePort();
    const fixture = join(REPO_ROOT, 'test', 'support', 'fixtures', 'stop-while-unreachable.ts');
    const run = await runCommand(process.execPath, ['--import', 'tsx', fixture, `redis://127.0.0.1:${port}`], { timeoutMs: 30_000 });
    assert.equal(run.code, 0, run.stderr);
    const times = Object.assign(
      {},
      ...run.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, number>),
    ) as { stoppedMs?: number; exitMs?: number };
    assert.ok(times.stoppedMs !== undefined && times.exitMs !== undefined, run.stdout);
    const lingered = times.exitMs - times.stoppedMs;
    console.log(`exited ${lingered.toFixed(0)} ms after stop() returned`);
    // ioredis' default disconnect grace kept it alive 2000 ms more; ours is 100 ms.
    assert.ok(lingered < 1_000, `the process lingered ${lingered.toFixed(0)} ms after stop() returned`);
  });

  it('refuses invalid options up front, naming the option, the value and the rule', () => {
    const url = 'redis://127.0.0.1:1/0';
    const cases: [Partial<ElectorOptions> | null, RegExp][] = [
      [{}, /invalid option redisUrl=undefined: is required/],
      [{ redisUrl: 'http://x' }, /invalid option redisUrl="http:\/\/x\/": the scheme must be redis:\/\//],
      [
        { redisUrl: 'redis://:hunter2@h/99' },
        /redisUrl="redis:\/\/:\*\*\*@h\/99": database 99 is out of range: use 0 to 15 .* give each its own lockKey instead/,
      ],
      [{ redisUrl: url, ttlMs: 500 }, /invalid option ttlMs=500: must be a whole number of milliseconds from 1000 to 3600000/],
      [{ redisUrl: url, ttlMs: '5000' as unknown as number }, /ttlMs="5000": must be a whole number of milliseconds/],
      [{ redisUrl: url, ttlMs: 5_000, renewIntervalMs: 5_000 }, /renewIntervalMs=5000: must be less than ttlMs \(5000\)/],
      [{ redisUrl: url, ttlMs: 1_000, renewIntervalMs: 900 }, /renewIntervalMs=900: a renewal that starts on time must be able to finish .* or raise ttlMs/],
      [{ redisUrl: url, lockKey: 'a b' }, /lockKey="a b": must not contain white space/],
      [{ redisUrl: url, lockKey: '' }, /lockKey="": must not be empty/],
      [{ redisUrl: url, instanceId: 'a/b' }, /instanceId="a\/b": must be 1 to 128 characters/],
      [{ redisUrl: url, minReplicas: 17 }, /minReplicas=17: must be a whole number from 0 to 16/],
      [{ redisUrl: url, stopGraceMs: -1 }, /stopGraceMs=-1: must be a whole number of milliseconds from 0 to 3600000/],
      [{ redisUrl: url, sentinelPassword: 'x' }, /sentinelPassword=\*\*\*: only a redis\+sentinel:\/\//],
      [{ redisUrl: url, logger: {} as ElectorLogger }, /logger=<object>: must have debug, info, warn and error methods/],
      [{ redisUrl: url, ttl: 5 } as Partial<ElectorOptions>, /invalid option ttl=<not shown>: unknown option; the options are redisUrl, lockKey/],
      // A misspelt secret never reaches the message (nor the logs that print it).
      [{ redisUrl: url, sentinelPasword: 's3cret' } as Partial<ElectorOptions>, /^createElector: invalid option sentinelPasword=<not shown>: unknown option;/],
      [{ redisUrl: url, sentinelPassword: 123456 as unknown as string }, /^createElector: invalid option sentinelPassword=<a number>: must be a string$/],
      [null, /invalid option options=null: createElector\(options\) needs an options object/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => createElector(options as ElectorOptions),
        (err: unknown) => err instanceof InvalidOptionError && message.test(err.message),
        `createElector(${JSON.stringify(options)}) should throw ${String(message)}`,
      );
    }
    for (const options of [
      { redisUrl: url, sentinelPasword: 's3cret' },
      { redisUrl: url, sentinelPassword: 3 },
      { redisUrl: url, password: 's3cret' },
    ]) {
      assert.throws(
        () => createElector(options as unknown as ElectorOptions),
        (e: unknown) => e instanceof InvalidOptionError && !e.message.includes('s3cret') && !e.message.includes('=3'),
        'a secret in a refused option is never shown',
      );
    }
    const err = (() => {
      try {
        createElector({ redisUrl: url, ttlMs: 500 });
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err instanceof InvalidOptionError);
    assert.equal(err.option, 'ttlMs');
    assert.equal(err.value, '500');
    assert.equal(err.rule, 'must be a whole number of milliseconds from 1000 to 3600000');
  });
});
