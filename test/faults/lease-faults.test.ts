import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ShiftedClock } from '../../tools/kit/clock-shim';
import { FaultCluster, type ReplicaSpec } from '../support/fault-cluster';
import { monoNow, sleep, waitFor } from '../../tools/kit/time';

/*
 * Everything one Redis can do to the lease keys, done to real processes: three `node dist/main.js`
 * replicas (TTL 2000 / renew 600 unless said) on a redis-server of the test's own. Each scenario
 * asserts, from every incarnation's "role changed" records, that no two leaderships overlapped and
 * tokens only went up, and that a leader does accepted (fenced) work again within 3 × TTL after
 * the fault ends.
 */

const TTL = 2_000;
const RENEW = 600;
const THREE: ReplicaSpec[] = [0, 1, 2].map(() => ({ ttlMs: TTL, renewMs: RENEW }));

async function scenario(
  opts: { replicas?: ReplicaSpec[]; redisArgs?: string[]; persistent?: boolean; env?: Record<string, string>; startFirst?: number },
  body: (c: FaultCluster) => Promise<number>,
): Promise<FaultCluster> {
  const c = await FaultCluster.start({
    replicas: opts.replicas ?? THREE,
    redis: { persistent: opts.persistent ?? true, extraArgs: opts.redisArgs ?? [], env: opts.env ?? {} },
    ...(opts.startFirst === undefined ? {} : { startFirst: opts.startFirst }),
  });
  try {
    // First election on a fresh Redis waits out one data-loss barrier.
    await c.waitForLeader(4 * maxTtl(c, opts.replicas ?? THREE));
    await c.waitForAcceptedWork(0, 3 * TTL);
    const faultEndedAt = await body(c);
    await c.waitForAcceptedWork(faultEndedAt, 3 * maxTtl(c, opts.replicas ?? THREE));
    c.assertSafe();
    await c.assertStreamTokensUnique();
    return c;
  } finally {
    await c.close();
  }
}

function maxTtl(_c: FaultCluster, specs: ReplicaSpec[]): number {
  return Math.max(...specs.map((s) => s.ttlMs));
}

/** Roughly 2 MiB of keys with a TTL (volatile-* policies evict only keys with one) or without. */
async function fill(c: FaultCluster, withTtl: boolean, rounds: number): Promise<void> {
  const value = 'x'.repeat(10_000);
  for (let i = 0; i < rounds; i++) {
    const p = c.client.pipeline();
    for (let j = 0; j < 50; j++) {
      if (withTtl) p.set(`filler:${i}:${j}`, value, 'EX', 3_600);
      else p.set(`filler:${i}:${j}`, value);
    }
    await p.exec();
    await sleep(20);
  }
}

async function evicted(c: FaultCluster): Promise<number> {
  const info = await c.client.info('stats');
  return Number(/evicted_keys:(\d+)/.exec(info)?.[1] ?? 0);
}

describe('lease faults with real processes', () => {
  it('volatile-ttl eviction under memory pressure never removes the lease record: the leader keeps leading', async () => {
    let leaderBefore = -1;
    await scenario({ redisArgs: ['--maxmemory', '3mb', '--maxmemory-policy', 'volatile-ttl'] }, async (c) => {
      leaderBefore = await c.waitForLeader(TTL);
      const status = JSON.parse((await c.replica(leaderBefore).get('/status')).body) as { redis_maxmemory_policy: string };
      assert.equal(status.redis_maxmemory_policy, 'volatile-ttl', '/status shows the policy');
      const metrics = (await c.replica(leaderBefore).get('/metrics')).body;
      assert.match(metrics, /grinder_ha_redis_maxmemory_policy\{policy="volatile-ttl"[^}]*\} 1/);
      const saidAt = (r: number): number =>
        c.replica(r).logs.filter((l) => l.level === 'error' && String(l.msg).includes('maxmemory-policy volatile-ttl')).length;
      assert.equal(saidAt(leaderBefore), 1, 'said once at error level');
      const leadershipsBefore = c.leaderships().length;
      await fill(c, true, 40);
      assert.ok((await evicted(c)) > 0, 'Redis did evict');
      assert.equal(await c.client.exists(c.keys.record, c.keys.counter), 2, 'the lease keys were not evicted');
      assert.equal(await c.client.ttl(c.keys.record), -1, 'the record has no expiry for volatile-* to pick');
      assert.equal(await c.waitForLeader(TTL), leaderBefore, 'the same replica still leads');
      assert.equal(c.leaderships().length, leadershipsBefore, 'no leadership ended or began');
      assert.equal(saidAt(leaderBefore), 1, 'and it was not repeated at every renewal');
      return monoNow();
    });
  });

  it('allkeys-* eviction removes the lease keys (allkeys-random, which surely picks them): barriers, never two leaders', async () => {
    await scenario({ redisArgs: ['--maxmemory', '3mb', '--maxmemory-policy', 'allkeys-random'] }, async (c) => {
      // Each round evicts about 50 of ~300 keys at random: the lease keys go within a few rounds.
      let gone = false;
      const value = 'x'.repeat(10_000);
      for (let round = 0; round < 200 && !gone; round++) {
        const p = c.client.pipeline();
        for (let j = 0; j < 50; j++) p.set(`filler:${round}:${j}`, value);
        await p.exec();
        gone = (await c.client.exists(c.keys.record, c.keys.counter)) < 2;
      }
      assert.ok(gone, 'eviction removed the record or the counter');
      assert.ok((await evicted(c)) > 0, 'Redis did evict');
      await c.client.config('SET', 'maxmemory', '0'); // the pressure ends
      return monoNow();
    });
  });

  it("an operator's DEL of the lock key, again and again: barriers, never two leaders", async () => {
    await scenario({}, async (c) => {
      for (let i = 0; i < 5; i++) {
        await c.client.del(c.lockKey);
        await sleep(700);
      }
      return monoNow();
    });
  });

  it('Redis comes back from an older RDB snapshot: no overlap, and no token is handed out twice', async () => {
    await scenario({ persistent: false }, async (c) => {
      const first = await c.waitForLeader(TTL);
      await c.client.save();
      const snapshot = join(c.redis.dir, 'dump.rdb');
      assert.ok(existsSync(snapshot));
      copyFileSync(snapshot, `${snapshot}.old`);
      // Leadership moves on after the snapshot: two more leaders, with higher tokens.
      await c.kill(first);
      await c.startReplica(first);
      const second = await c.waitForLeader(3 * TTL);
      await sleep(RENEW);
      await c.kill(second);
      await c.startReplica(second);
      await c.waitForLeader(3 * TTL);
      await sleep(RENEW);
      // Redis dies and restarts from the old snapshot.
      await c.redis.stop();
      copyFileSync(`${snapshot}.old`, snapshot);
      await c.redis.startProcess();
      return monoNow();
    });
  });

  for (const [what, value] of [
    ['below the fence', '5'],
    ['garbage', 'not-a-number'],
    ['above 2^53', '99999999999999999999'],
    ['just below 2^53 (no token left above it)', '9007199254740991'],
  ] as const) {
    it(`the token counter set ${what}: repaired, not fought; the next leader's work is accepted`, async () => {
      let fence = 0;
      const c = await scenario({}, async (c) => {
        // A fence far above Redis' clock in µs (tokens issued while that clock ran ahead), so only
        // taking the fence into account can produce a token the fence accepts.
        const [sec] = await c.client.time();
        fence = (Number(sec) + 86_400) * 1_000_000;
        const raisedAt = monoNow();
        // In one transaction, so the acquisition that follows always finds both the fence and the
        // damaged counter.
        await c.client.multi().set(c.keys.fence, String(fence)).set(c.keys.counter, value).exec();
        // The sitting leader's next fenced live write (within GRINDER_LIVE_INTERVAL_MS) is rejected
        // and it resigns, so a standby acquires against the damaged counter at once. Waiting for
        // that leadership, not for /readyz, leaves no race over which leader the kill below hits.
        const repaired = await waitFor('a leadership with a token above the fence', () => c.leaderships().find((l) => l.token > fence), 3 * TTL);
        assert.equal(await c.client.get(c.keys.counter), String(repaired.token), 'the counter was repaired to the new token');
        const holder = [0, 1, 2].find((i) => c.instanceId(i) === repaired.instance);
        assert.ok(holder !== undefined, `${repaired.instance} is one of the replicas`);
        // A crash, so the next acquisition waits out the TTL and then has to build on the repaired
        // counter: a repair that did not hold would show as a low token, a stale counter or churn.
        const killedAt = monoNow();
        await c.kill(holder);
        const next = await waitFor('a leadership begun after the kill', () => c.leaderships().find((l) => l.startMonoMs > killedAt), 3 * TTL);
        console.log(
          `# a token above the fence ${(repaired.startMonoMs - raisedAt).toFixed(0)} ms after it was raised, the next leader ${(next.startMonoMs - killedAt).toFixed(0)} ms after the kill (each within ${3 * TTL} ms)`,
        );
        assert.ok(next.token > repaired.token, `the next leader's token ${next.token} is above ${repaired.token}`);
        assert.equal(await c.client.get(c.keys.counter), String(next.token), 'the counter follows the newest token');
        return monoNow();
      });
      assert.ok(c.leaderships().length <= 3, `no churn: ${c.leaderships().length} leaderships`);
    });
  }

  it('PERSIST, a far expiry or a hand-written value at the lock key, then the leader crashes: a new leader within the bound', async () => {
    await scenario({}, async (c) => {
      await c.client.persist(c.lockKey);
      await c.client.pexpire(c.lockKey, 3_600_000);
      const leader = await c.waitForLeader(TTL);
      await c.kill(leader);
      await c.waitForLeader(3 * TTL);
      await c.client.set(c.lockKey, '123|abcdef|written-by-hand');
      return monoNow();
    });
  });

  it('a Redis that keeps every write (appendfsync always) restarted from an older copy of its AOF: no overlap, no token twice, a leader again', async () => {
    await scenario({}, async (c) => {
      const first = await c.waitForLeader(TTL);
      await sleep(RENEW);
      const aof = join(c.redis.dir, 'appendonlydir');
      cpSync(aof, `${aof}.old`, { recursive: true }); // the backup: one renewal of first's leadership
      await sleep(2 * RENEW); // first renews on: every standby sees the backup's version replaced
      await c.kill(first);
      // Restored from the backup. Same token, an older version, and Redis says it keeps every
      // write: nobody may wait forever for the newer version, nor take the old one at once.
      await c.redis.stop();
      rmSync(aof, { recursive: true, force: true });
      cpSync(`${aof}.old`, aof, { recursive: true });
      await c.redis.startProcess();
      return monoNow();
    });
  });

  it('replicas with different TTLs, then FLUSHALL while the long-TTL leader is paused: the barrier covers the longest TTL', async () => {
    const specs: ReplicaSpec[] = [
      { ttlMs: 6_000, renewMs: 1_800 },
      { ttlMs: TTL, renewMs: RENEW },
      { ttlMs: TTL, renewMs: RENEW },
    ];
    await scenario({ replicas: specs, startFirst: 1 }, async (c) => {
      assert.equal(await c.waitForLeader(6_000), 0, 'the long-TTL replica leads');
      await c.startReplica(1);
      await c.startReplica(2);
      await sleep(2 * RENEW); // the short-TTL replicas have seen its record
      c.signal(0, 'SIGSTOP'); // cut off, still believing it leads until its own deadline
      await c.client.flushall();
      await sleep(7_000);
      c.signal(0, 'SIGCONT');
      return monoNow();
    });
  });

  it('live writes Redis answers with an error (the stream key made a string): warned, counted, and the leader resigns after 3', async () => {
    await scenario({}, async (c) => {
      const leader = await c.waitForLeader(TTL);
      const r = c.replica(leader);
      await c.client.del(c.keys.liveStream);
      await c.client.set(c.keys.liveStream, 'not a stream'); // every XADD now fails with WRONGTYPE
      await waitFor('the leader to resign', () =>
        r.logsWith('role changed').some((l) => String(l.reason).includes('3 consecutive live writes failed')) ? true : undefined,
      );
      const failed = r.logsWith('fenced live write failed');
      assert.ok(failed.length >= 3, `each failure logged (${failed.length})`);
      assert.ok(failed.every((l) => l.level === 'warn' && l.redis_answered === true));
      const metrics = (await r.get('/metrics')).body;
      const counted = Number(/grinder_live_writes_total\{[^}]*result="failed"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
      assert.ok(counted >= 3, `counted as failed (${counted})`);
      await c.client.del(c.keys.liveStream); // the fault ends: some replica leads and writes again
      return monoNow();
    });
  });

  it("Redis' wall clock steps forward an hour, then back two: nothing expires early, nobody waits an hour", async () => {
    const clock = ShiftedClock.build();
    const skew = async (c: FaultCluster): Promise<number> => Number((await c.client.time())[0]) - Date.now() / 1000;
    const c = await scenario({ env: clock.env }, async (c) => {
      await sleep(RENEW);
      clock.step(3_600);
      await sleep(50);
      assert.ok(Math.abs((await skew(c)) - 3_600) < 5, "the shim moved Redis' TIME an hour ahead");
      await sleep(3 * TTL);
      clock.step(-7_200);
      await sleep(3 * TTL);
      const leader = await c.waitForLeader(TTL);
      await c.kill(leader); // a crash while Redis' clock is behind: the takeover is not an hour late
      return monoNow();
    });
    assert.equal(c.leaderships().length, 2, 'the steps alone changed no leadership: the first one, then the one after the crash');
  });

  it("a data loss while Redis' clock is a year behind: tokens still go up, and the new leader's work is accepted", async () => {
    const clock = ShiftedClock.build();
    await scenario({ env: clock.env }, async (c) => {
      clock.step(-365 * 24 * 3_600);
      await sleep(100);
      await c.client.flushall();
      return monoNow();
    });
  });
});
