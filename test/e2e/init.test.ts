import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runGrinder } from '../../tools/kit/command';
import { FaultCluster } from '../support/fault-cluster';
import { monoNow, sleep, waitFor } from '../../tools/kit/time';

/*
 * `grinder init` against real processes: on a brand-new Redis the first leader comes at once
 * instead of after the one-TTL data-loss barrier; anywhere else, and after a later data loss, the
 * barrier stands.
 */

const clusters: FaultCluster[] = [];
after(async () => {
  for (const c of clusters) await c.close();
});

async function emptyCluster(n: number, ttlMs: number, renewMs: number, liveIntervalMs?: number): Promise<FaultCluster> {
  const c = await FaultCluster.start({
    replicas: Array.from({ length: n }, () => ({ ttlMs, renewMs })),
    lockKey: `grinder:init:${clusters.length}`,
    startFirst: 0,
    ...(liveIntervalMs === undefined ? {} : { liveIntervalMs }),
  });
  clusters.push(c);
  return c;
}

/** The replicas' settings, which the command reads too. */
function env(c: FaultCluster, ttlMs: number): Record<string, string> {
  const spec = c.spec(0);
  assert.equal(spec.ttlMs, ttlMs);
  return {
    GRINDER_REDIS_URL: c.redisUrl,
    GRINDER_HA_LOCK_KEY: c.lockKey,
    GRINDER_HA_LOCK_TTL_MS: String(ttlMs),
    GRINDER_HA_RENEW_INTERVAL_MS: String(spec.renewMs),
  };
}

/** ms from the start of the first replica's process to the start of the first leadership. */
function firstLeaderAfterStart(c: FaultCluster, startedMono: number): number {
  const first = c.assertSafe()[0];
  assert.ok(first, 'a leadership');
  return first.startMonoMs - startedMono;
}

describe('grinder init', () => {
  it('on a brand-new Redis, the first leader is elected at once instead of after one TTL', async () => {
    const ttl = 10_000; // the default: the barrier would keep everyone out for 10 s
    const c = await emptyCluster(2, ttl, 3_000);
    const init = await runGrinder(['init'], env(c, ttl));
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /^declared a brand-new GRINDER cluster for lock key grinder:init:0: the first replica that starts within 60 s leads at once\n$/);
    const started = monoNow();
    await Promise.all([c.startReplica(0), c.startReplica(1)]);
    await c.waitForLeader(ttl / 2);
    const ms = firstLeaderAfterStart(c, started);
    console.log(`first leader ${ms.toFixed(0)} ms after the replicas were started (TTL ${ttl} ms)`);
    assert.ok(ms < ttl / 2, `no barrier: the first leader came ${ms.toFixed(0)} ms after the start`);
    assert.equal(await c.client.exists(c.keys.init), 0, 'the declaration is used up');

    const again = await runGrinder(['init'], env(c, ttl));
    assert.equal(again.code, 0, 'harmless on an existing cluster (a compose one-shot runs it at every up)');
    assert.match(again.stdout, /^nothing to do: the lock key grinder:init:0 already has its record \(GRINDER has run here before\)/);
    assert.equal(await c.client.exists(c.keys.init), 0, 'and declares nothing');
    assert.equal(c.assertSafe().length, 1, 'the leader is left alone');
  });

  it('without init, and after a later data loss, the barrier stands for one TTL', async () => {
    const ttl = 2_000;
    const c = await emptyCluster(2, ttl, 500);
    const started = monoNow();
    await Promise.all([c.startReplica(0), c.startReplica(1)]);
    await c.waitForLeader(3 * ttl);
    assert.ok(firstLeaderAfterStart(c, started) >= ttl, 'no init: the first leader waited out the barrier');

    // Declared on a live cluster: refused, nothing changes.
    const init = await runGrinder(['init'], env(c, ttl));
    assert.equal(init.code, 0);
    assert.match(init.stdout, /^nothing to do/);
    // Redis loses everything later: the declaration is long gone, so the barrier comes back.
    const lostAt = monoNow();
    await c.client.flushall();
    await waitFor('a new leadership after the data loss', () => (c.leaderships().length === 2 ? true : undefined), 4 * ttl);
    const all = c.assertSafe();
    const next = all.at(-1);
    assert.ok(next && all.length === 2, JSON.stringify(all));
    assert.ok(next.startMonoMs - lostAt >= ttl - 50, `a leader only one TTL after the data loss (${(next.startMonoMs - lostAt).toFixed(0)} ms)`);
  });

  it('after a data loss, a declaration (compose runs init at every up) is not believed beside a replica that led: no overlap', async () => {
    // The set-up needs the old leader frozen after it registered again and before it wrote to the
    // empty Redis (a renewal finds the record gone and writes the barrier; a fenced live write
    // brings the fence back: either way init declares nothing), and the newcomer's first acquire
    // inside the old leader's registration (one TTL). Long renew and live intervals and a long TTL
    // give each of those seconds of room on a loaded machine.
    const ttl = 8_000;
    const renew = 5_000;
    const c = await emptyCluster(2, ttl, renew, 60_000);
    const init = await runGrinder(['init'], env(c, ttl));
    assert.equal(init.code, 0);
    await c.startReplica(0);
    await c.waitForLeader(ttl);
    // Right after a renewal, so the next one is a renew interval away.
    const record = await c.client.get(c.lockKey);
    await waitFor('a renewal of the leader', async () => ((await c.client.get(c.lockKey)) !== record ? true : undefined), 2 * renew, 5);
    const restartAt = monoNow();
    // Redis restarts without its data: the leader is still inside its lease.
    await c.redis.restart({ loseData: true });
    // The leader registers again at once (it has seen a token), then freezes before it could
    // notice the record is gone: the old leader that a newcomer must not overlap.
    await waitFor(
      'the old leader registered again',
      async () => ((await c.client.zscore(c.keys.veterans, c.instanceId(0))) !== null ? true : undefined),
      ttl,
      5,
    );
    c.signal(0, 'SIGSTOP');
    const frozenMs = monoNow() - restartAt;
    assert.ok(frozenMs < renew, `set-up: the leader was frozen ${frozenMs.toFixed(0)} ms after the restart, after its next renewal was due`);
    const again = await runGrinder(['init'], env(c, ttl));
    assert.match(again.stdout, /^declared/, 'nothing is left in Redis, so init declares again');
    const startedAt = monoNow();
    await c.startReplica(1);
    await sleep(1_000);
    c.signal(0, 'SIGCONT');
    // Either replica may lead next: the old one, back from its pause, finds the newcomer's barrier,
    // carries its newer token forward in a barrier of its own, and both wait that one out.
    const next = await waitFor('a leader after the data loss', () => c.leaderships().find((l) => l.startMonoMs > startedAt), 4 * ttl);
    c.assertSafe();
    const ledAfterStart = next.startMonoMs - startedAt;
    console.log(
      `leader frozen ${frozenMs.toFixed(0)} ms after the restart; newcomer started ${(startedAt - restartAt).toFixed(0)} ms after it; ${next.instance === c.instanceId(1) ? 'the newcomer' : 'the old leader'} led ${ledAfterStart.toFixed(0)} ms after the newcomer's start (TTL ${ttl} ms)`,
    );
    assert.ok(
      ledAfterStart >= ttl - 50,
      `the newcomer did not believe the declaration: nobody led for one TTL after its start (${next.instance} led after ${ledAfterStart.toFixed(0)} ms)`,
    );
  });

  it('refuses a bad window with exit code 2, and says when Redis cannot be reached', async () => {
    const bad = await runGrinder(['init', '--window-ms', '5'], { GRINDER_REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--window-ms "5": must be a whole number of ms from 1000 to 3600000/);
    const down = await runGrinder(['init'], { GRINDER_REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1.* within 5 s.*check GRINDER_REDIS_URL/);
  });
});
