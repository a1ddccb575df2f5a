import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { Registration } from '../../src/cluster/registration';
import { lateAfterMs, readCluster, type ClusterView } from '../../src/cluster/view';
import { defineCommands } from '../../src/redis/commands';
import { runGrinder } from '../../tools/kit/command';
import { FaultCluster } from '../support/fault-cluster';
import { monoNow, sleep, waitFor } from '../../tools/kit/time';

/*
 * `grinder switchover` against real replicas: every leadership is rebuilt from the replicas'
 * role-change records (CLOCK_MONOTONIC) and checked for overlaps and token order, whatever happened.
 */

const TTL = 2_000;
const RENEW = 500;
const clusters: FaultCluster[] = [];
after(async () => {
  for (const c of clusters) await c.close();
});

async function cluster(n: number, ttlMs = TTL, renewMs = RENEW): Promise<FaultCluster> {
  const c = await FaultCluster.start({ replicas: Array.from({ length: n }, () => ({ ttlMs, renewMs })), lockKey: `grinder:so:${clusters.length}` });
  clusters.push(c);
  defineCommands(c.client);
  await c.waitForLeader(4 * ttlMs);
  await view(c, (v) => v.members.length === n && v.members.every((m) => m.healthy) && v.leader !== null, 4 * ttlMs);
  return c;
}

/** The replicas' own lease settings: the command judges heartbeats and waits by them. */
function env(c: FaultCluster): Record<string, string> {
  const { ttlMs, renewMs } = c.spec(0);
  return {
    GRINDER_REDIS_URL: c.redisUrl,
    GRINDER_HA_LOCK_KEY: c.lockKey,
    GRINDER_HA_LOCK_TTL_MS: String(ttlMs),
    GRINDER_HA_RENEW_INTERVAL_MS: String(renewMs),
  };
}

/** The cluster view once `ok` holds for it. */
function view(c: FaultCluster, ok: (v: ClusterView) => boolean, timeoutMs = 4 * TTL): Promise<ClusterView> {
  return waitFor(
    'the cluster view',
    async () => {
      const v = await readCluster(c.client, c.keys, c.lockKey);
      return ok(v) ? v : undefined;
    },
    timeoutMs,
    25,
  );
}

describe('grinder switchover', () => {
  it('hands leadership to the named standby: a higher token, no overlap, and a gap of milliseconds', async () => {
    const c = await cluster(3);
    const from = await c.waitForLeader(TTL);
    const to = [0, 1, 2].find((i) => i !== from) as number;
    const run = await runGrinder(['switchover', '--to', c.instanceId(to)], env(c));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^switched over: ${c.instanceId(from)} \\(token \\d+\\) -> ${c.instanceId(to)} \\(token \\d+\\) in \\d+ ms\\n$`));
    assert.equal(await c.waitForLeader(TTL), to);
    const all = c.assertSafe();
    const [old, next] = all.slice(-2);
    assert.ok(old && next, 'two leaderships');
    assert.equal(old.instance, c.instanceId(from));
    assert.equal(next.instance, c.instanceId(to));
    const gap = next.startMonoMs - old.endMonoMs;
    console.log(`switchover gap: ${gap.toFixed(1)} ms (old leader stepped down -> new leader ACTIVE)`);
    // A handover, not a lease running out: that would take the whole TTL.
    assert.ok(gap < TTL / 2, `the new leader began ${gap.toFixed(1)} ms after the old one ended`);
    await c.assertStreamTokensUnique();
  });

  it('without --to hands leadership to a healthy standby', async () => {
    const c = await cluster(2);
    const from = await c.waitForLeader(TTL);
    const run = await runGrinder(['switchover'], env(c));
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await c.waitForLeader(TTL), 1 - from);
    c.assertSafe();
  });

  it('refuses an unknown target, the leader itself and a dead standby, and leaves the leader alone', async () => {
    const c = await cluster(3);
    const from = await c.waitForLeader(TTL);
    const before = await readCluster(c.client, c.keys, c.lockKey);
    const unknown = await runGrinder(['switchover', '--to', 'nobody'], env(c));
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown member "nobody": no live registration under that id \(registered: .*fault-1.*\); check the id with grinder list/);
    const self = await runGrinder(['switchover', '--to', c.instanceId(from)], env(c));
    assert.equal(self.code, 1);
    assert.match(self.stderr, /already leads/);
    const dead = [0, 1, 2].find((i) => i !== from) as number;
    await c.kill(dead);
    await view(c, (v) => v.members.every((m) => m.instance_id !== c.instanceId(dead) || !m.healthy));
    const toDead = await runGrinder(['switchover', '--to', c.instanceId(dead)], env(c));
    assert.equal(toDead.code, 1);
    assert.match(toDead.stderr, new RegExp(`${c.instanceId(dead)} is not a healthy STANDBY|unknown member "${c.instanceId(dead)}"`));
    const bad = await runGrinder(['switchover', '--bogus=secret'], env(c));
    assert.equal(bad.code, 2);
    assert.ok(!bad.stderr.includes('secret'), 'an option value is never echoed');
    const now = await readCluster(c.client, c.keys, c.lockKey);
    assert.equal(now.leader, c.instanceId(from));
    assert.equal(now.lease.token, before.lease.token, 'no new leadership');
    c.assertSafe();
  });

  it('a target that is gone once the lease is handed to it: nobody leads for one TTL, then a replica does, never two', async () => {
    const c = await cluster(2);
    // A registration as healthy as any, of a replica that no longer runs: the target dies right
    // after the command chose it.
    const reg: Registration = {
      instance_id: 'ghost',
      role: 'standby',
      fencing_token: null,
      lease_remaining_ms: null,
      http_url: 'http://127.0.0.1:1',
      version: '0.0.0',
      started_at: new Date().toISOString(),
      healthy: true,
      ttl_ms: 60_000,
      renew_interval_ms: 60_000,
    };
    await c.client.grinderHeartbeat(c.keys.members, c.keys.member('ghost'), c.keys.veterans, 'ghost', 60_000, JSON.stringify(reg), '');
    const run = await runGrinder(['switchover', '--to', 'ghost', '--timeout-ms', '1000'], env(c));
    const handedAt = monoNow();
    assert.equal(run.code, 1);
    assert.match(run.stderr, /no new leader within 1000 ms \(lease record: handoff ghost/);
    // Either replica, the old leader included: the handoff is waited out like any lease.
    await c.waitForLeader(3 * TTL);
    const all = c.assertSafe();
    const last = all.at(-1);
    const old = all.at(-2);
    assert.ok(last && old);
    assert.ok(
      last.startMonoMs - old.endMonoMs >= TTL - 50,
      `nobody led for one TTL after the handoff (gap ${(last.startMonoMs - old.endMonoMs).toFixed(0)} ms)`,
    );
    assert.ok(last.startMonoMs <= handedAt + 2 * TTL, 'and then a replica did');
  });

  it('during a Redis blip: the switchover completes across it, acted on once, never two leaders', async () => {
    // The leader is frozen from before the command starts until after the blip, and starting node
    // takes 0.5-2 s on a loaded CI machine. All that while the command must still find the leader's
    // heartbeat on time (it refuses a late leader), and the leader's lease must not run out (it would
    // wake as a STANDBY and the standby would take over by itself): with a renew interval of 2 s the
    // heartbeat is late 4.6 s after the last one and the lease lasts 5.9-7.9 s past the freeze.
    const ttl = 8_000;
    const renew = 2_000;
    const c = await cluster(2, ttl, renew);
    const from = await c.waitForLeader(ttl);
    const leader = c.instanceId(from);
    const to = c.instanceId(1 - from);
    const ear = new Redis(c.redisUrl);
    try {
      await ear.subscribe(c.keys.events);
      const published = new Promise<void>((resolve) =>
        ear.on('message', (_channel: string, message: string) => message.startsWith('switchover|') && resolve()),
      );
      // Right after a heartbeat, so the command has the whole time until the leader counts as late.
      const leaderIn = (v: ClusterView) => v.members.find((m) => m.instance_id === leader);
      const lastBeat = leaderIn(await view(c, () => true, ttl))?.heartbeat_ms;
      const beat = leaderIn(await view(c, (v) => (leaderIn(v)?.heartbeat_ms ?? lastBeat) !== lastBeat, 2 * renew));
      assert.ok(
        beat?.healthy && beat.role === 'active' && beat.lease_remaining_ms !== null,
        `set-up: ${leader} heartbeats as a healthy ACTIVE (${JSON.stringify(beat)})`,
      );
      const lateInMs = lateAfterMs({ ttl_ms: ttl, renew_interval_ms: renew }) - beat.last_seen_ms;
      const leaseLeftMs = beat.lease_remaining_ms;
      // Frozen inside its lease so it cannot act before the blip: every connection, its own, the
      // standby's and the command's, is cut while the request is pending.
      const stoppedAt = monoNow();
      c.signal(from, 'SIGSTOP');
      const spawnedAt = monoNow();
      const pending = runGrinder(['switchover', '--to', to], env(c));
      // A command that refuses never publishes: fail now, in its own words, not at the test's timeout.
      const refused = await Promise.race([published.then(() => null), pending]);
      const publishedMs = monoNow() - stoppedAt;
      if (refused)
        assert.fail(
          `grinder switchover exited (code ${refused.code}) without publishing a request, ${publishedMs.toFixed(0)} ms after the leader was frozen ` +
            `(its heartbeat counts as late from ${lateInMs} ms: past that, the set-up was too slow): ${refused.stderr}`,
        );
      // The request is out, and nobody can act on it yet.
      ear.disconnect();
      await c.client.client('KILL', 'TYPE', 'normal').catch(() => undefined);
      await c.client.client('KILL', 'TYPE', 'pubsub').catch(() => undefined);
      await sleep(300);
      const resumedAt = monoNow();
      c.signal(from, 'SIGCONT');
      const run = await pending;
      const frozenMs = resumedAt - stoppedAt;
      console.log(
        `leader frozen ${frozenMs.toFixed(0)} ms with ${leaseLeftMs} ms of its lease left; the request published ${publishedMs.toFixed(0)} ms into it ` +
          `(late from ${lateInMs} ms); the command took ${run.ms.toFixed(0)} ms`,
      );
      // After the wake the leader reconnects and hands over (trying again until Redis answers); a
      // renew interval is ample for that.
      assert.ok(
        frozenMs <= leaseLeftMs - renew,
        `set-up: the leader was frozen ${frozenMs.toFixed(0)} ms with ${leaseLeftMs} ms of its lease left, too little to wake and hand over inside it`,
      );
      assert.equal(run.code, 0, `${run.stdout} ${run.stderr}\n${c.tail(10)}`);
      const exitedAt = spawnedAt + run.ms;
      assert.ok(
        exitedAt > resumedAt,
        `the command was still waiting across the blip (it took ${run.ms.toFixed(0)} ms and exited ${(exitedAt - resumedAt).toFixed(0)} ms after the leader woke)`,
      );
      assert.equal(await c.waitForLeader(3 * ttl), 1 - from);
      const requests = c.replica(from).logsWith('switchover requested: handing the lease over to ' + to);
      assert.equal(requests.length, 1, 'acted on once, however often the request was published');
      // Handed over once Redis answered again, not left to run out one TTL later.
      assert.equal(c.replica(from).logsWith(`handed the lease over to ${to}`).length, 1, `handed over across the blip\n${c.tail(10)}`);
      c.assertSafe();
    } finally {
      ear.disconnect();
    }
  });
});
