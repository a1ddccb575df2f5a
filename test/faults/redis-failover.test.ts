import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, Redis } from 'ioredis';
import { errMessage } from '../../src/error-text';
import { ChaosProxy } from '../../tools/kit/proxy';
import { FaultCluster, type ReplicaSpec } from '../support/fault-cluster';
import { SentinelSetup, SmallCluster } from '../../tools/kit/redis-topologies';
import { monoNow, sleep, waitFor } from '../../tools/kit/time';

/*
 * Redis is not a single point of failure: two `node dist/main.js` replicas on a Sentinel set-up
 * (master, replica, three Sentinels) and on a Redis Cluster, through real failovers. Every
 * scenario asserts from the role-change records that no two leaderships overlapped and tokens only
 * went up, and that a leader does accepted work again after the failover.
 */

const TTL = 2_000;
const RENEW = 600;
const TWO: ReplicaSpec[] = [
  { ttlMs: TTL, renewMs: RENEW },
  { ttlMs: TTL, renewMs: RENEW },
];
/** Sentinel: 1 s to call the master down, then the election and promotion of the replica. */
const FAILOVER_BUDGET_MS = 10_000;

async function withSentinel(
  body: (s: SentinelSetup, c: FaultCluster, replicationLink: ChaosProxy | null) => Promise<number>,
  opts: { proxied?: boolean } = {},
): Promise<FaultCluster> {
  let proxy: ChaosProxy | null = null;
  const s = await SentinelSetup.start(
    opts.proxied
      ? {
          replicaOfPort: async (masterPort) => {
            proxy = await ChaosProxy.start({ targetPort: masterPort });
            return proxy.port;
          },
        }
      : {},
  );
  const client = s.client();
  client.on('error', () => undefined);
  let c: FaultCluster | null = null;
  try {
    c = await FaultCluster.attach({ replicas: TWO, redisUrl: s.url, client });
    await c.waitForLeader(4 * TTL);
    await c.waitForAcceptedWork(0, 3 * TTL);
    const status = JSON.parse((await c.replica(0).get('/status')).body) as { redis_mode: string; redis_master: string; replicas_acked: boolean | null };
    assert.equal(status.redis_mode, 'sentinel');
    assert.equal(status.redis_master, `127.0.0.1:${s.master.port}`);
    const ended = await body(s, c, proxy);
    await c.waitForAcceptedWork(ended, FAILOVER_BUDGET_MS + 3 * TTL).catch((err: unknown) => {
      throw new Error(`${errMessage(err)}\n${c?.tail() ?? ''}`);
    });
    c.assertSafe();
    await c.assertStreamTokensUnique();
    return c;
  } finally {
    await c?.close();
    await (proxy as ChaosProxy | null)?.close();
    await s.cleanup();
  }
}

describe('Redis Sentinel', () => {
  it('the master dies, Sentinel promotes the replica: one leader again, no overlap, tokens up', async () => {
    let killedAt = 0;
    let promotedAt = 0;
    let readyAt = 0;
    const c = await withSentinel(async (s, c) => {
      const leader = await c.waitForLeader(TTL);
      const before = JSON.parse((await c.replica(leader).get('/status')).body) as { replicas_acked: boolean | null };
      assert.equal(before.replicas_acked, true, 'lease writes wait for the replica');
      killedAt = monoNow();
      await s.master.stop();
      await waitFor('Sentinel to promote the replica', async () => ((await s.masterPort()) === s.replica.port ? true : undefined), FAILOVER_BUDGET_MS, 100);
      promotedAt = monoNow();
      await c.waitForLeader(FAILOVER_BUDGET_MS + 3 * TTL);
      // When a replica became ACTIVE after the kill, by its own role-change record (the product's
      // time, not this test's polling): within one TTL of the promotion, plus a reconnect and a look.
      const led = c.leaderships().filter((l) => l.startMonoMs > killedAt);
      readyAt = led.length > 0 ? Math.min(...led.map((l) => l.startMonoMs)) : monoNow();
      assert.ok(readyAt - promotedAt <= TTL + RENEW + 1_000, `ACTIVE ${(readyAt - promotedAt).toFixed(0)} ms after Sentinel named the new master (TTL ${TTL})`);
      await waitFor(
        'both replicas to follow the new master',
        async () => {
          const after = await Promise.all([0, 1].map(async (i) => JSON.parse((await c.replica(i).get('/status')).body) as { redis_master: string }));
          return after.every((x) => x.redis_master === `127.0.0.1:${s.replica.port}`) ? true : undefined;
        },
        FAILOVER_BUDGET_MS,
      );
      const metrics = (await c.replica(0).get('/metrics')).body;
      assert.match(metrics, /^grinder_ha_redis_master_changes_total(\{[^}]*\})? [1-9]/m);
      return monoNow();
    });
    console.log(
      `# one ACTIVE ${(readyAt - killedAt).toFixed(0)} ms after the master was killed, ${(readyAt - promotedAt).toFixed(0)} ms after the promotion was seen (TTL ${TTL})`,
    );
    assert.ok(c.leaderships().length >= 1);
  });

  it("the master dies while the replication link holds the leader's last renewals back: still no overlap", async () => {
    await withSentinel(
      async (s, c, link) => {
        assert.ok(link, 'the replica reaches the master through a proxy');
        const leader = await c.waitForLeader(TTL);
        // Hold every byte between master and replica: renewals run on the master but never reach
        // the replica, so WAIT fails and they do not count.
        link.partition();
        // The first renewal after the cut is due within RENEW and counts once WAIT gives up; a
        // loaded machine may be slower, which a fixed sleep would turn into a failure.
        let metrics = '';
        await waitFor(
          'unreplicated renewals counted as failures (operation="renew", reason="replication")',
          async () => {
            metrics = (await c.replica(leader).get('/metrics')).body;
            return /^grinder_ha_lock_failures_total\{operation="renew",reason="replication"[^}]*\} [1-9]/m.test(metrics) ? true : undefined;
          },
          5 * RENEW,
          50,
        ).catch((err: unknown) => {
          const counted = metrics.split('\n').filter((l) => l.startsWith('grinder_ha_lock_failures_total'));
          throw new Error(`${errMessage(err)}\n${counted.join('\n') || '(no grinder_ha_lock_failures_total)'}`);
        });
        await s.master.stop();
        await waitFor('Sentinel to promote the replica', async () => ((await s.masterPort()) === s.replica.port ? true : undefined), FAILOVER_BUDGET_MS, 100);
        link.heal();
        return monoNow();
      },
      { proxied: true },
    );
  });

  it('the master loses its only replica (frozen, its link killed): nobody leads on it, even once ROLE lists no replica', async () => {
    await withSentinel(async (s, c) => {
      await c.waitForLeader(TTL);
      const pid = s.replica.pid;
      assert.ok(pid, 'the replica runs');
      // The master now stands alone, as on the minority side of a partition: the replica cannot
      // answer (SIGSTOP) and its link is gone, so the master's ROLE lists no replica at once.
      process.kill(pid, 'SIGSTOP');
      const master = new Redis(s.master.port);
      try {
        await master.call('CLIENT', 'KILL', 'TYPE', 'replica');
        const role = (await master.call('ROLE')) as [string, number, unknown[]];
        assert.deepEqual(role[2], [], 'ROLE lists no replica');
        await sleep(TTL + RENEW); // the leader's deadline passes: its renewals no longer count
        // ROLE is read again every 5 s: 'auto' must keep asking for the replica it saw, or the
        // leader would go on alone on a master a failover could replace.
        const until = monoNow() + 7_000;
        while (monoNow() < until) {
          assert.deepEqual(await c.activeNow(), [], `no ACTIVE replica on a master without its replica\n${c.tail(12)}`);
          await sleep(100);
        }
      } finally {
        master.disconnect();
        process.kill(pid, 'SIGCONT');
      }
      return monoNow();
    });
  });

  it('a graceful SENTINEL FAILOVER (the old master turns read-only): the replicas follow, no overlap', async () => {
    await withSentinel(async (s) => {
      const ask = new Redis(s.sentinels[0]?.port ?? 0);
      try {
        await ask.call('SENTINEL', 'FAILOVER', 'grinder');
      } finally {
        ask.disconnect();
      }
      await waitFor('the replica to be master', async () => ((await s.masterPort()) === s.replica.port ? true : undefined), FAILOVER_BUDGET_MS, 100);
      return monoNow();
    });
  });
});

describe('Redis Cluster', () => {
  it('the default lock key works on a cluster, and a failover of its master keeps one leader', async () => {
    const cluster = await SmallCluster.start();
    const client = new Cluster(
      [
        { host: '127.0.0.1', port: cluster.master.port },
        { host: '127.0.0.1', port: cluster.replica.port },
      ],
      {
        clusterRetryStrategy: () => 100,
      },
    );
    client.on('error', () => undefined);
    let c: FaultCluster | null = null;
    try {
      c = await FaultCluster.attach({ replicas: TWO, redisUrl: cluster.url, client, lockKey: 'grinder:leader:lock' });
      await c.waitForLeader(4 * TTL);
      await c.waitForAcceptedWork(0, 3 * TTL);
      const fc = c;
      const status = JSON.parse((await fc.replica(0).get('/status')).body) as { redis_mode: string; redis_master: string; replicas_acked: boolean | null };
      assert.equal(status.redis_mode, 'cluster');
      assert.equal(status.redis_master, `127.0.0.1:${cluster.master.port}`, 'the node serving the lock key');
      const leader = await fc.waitForLeader(TTL);
      await waitFor('a lease write acknowledged by the replica', async () => {
        const s = JSON.parse((await fc.replica(leader).get('/status')).body) as { replicas_acked: boolean | null };
        return s.replicas_acked === true ? true : undefined;
      });
      // A manual failover: the replica takes the slots over, the old master becomes its replica.
      const r = new Redis(cluster.replica.port);
      try {
        await r.call('CLUSTER', 'FAILOVER');
        await waitFor('the replica to be master', async () => ((await r.info('replication')).includes('role:master') ? true : undefined), 10_000, 100);
      } finally {
        r.disconnect();
      }
      const ended = monoNow();
      // The slot moved while every connection stayed up: each replica notices at its next lease call.
      await waitFor(
        'both replicas to name the new master of the lock key, and count the change',
        async () => {
          const views = await Promise.all(
            [0, 1].map(async (i) => ({
              master: (JSON.parse((await fc.replica(i).get('/status')).body) as { redis_master: string }).redis_master,
              metrics: (await fc.replica(i).get('/metrics')).body,
            })),
          );
          return views.every(
            (v) => v.master === `127.0.0.1:${cluster.replica.port}` && /^grinder_ha_redis_master_changes_total(\{[^}]*\})? [1-9]/m.test(v.metrics),
          )
            ? true
            : undefined;
        },
        3 * TTL,
      );
      await c.waitForAcceptedWork(ended, 3 * TTL + 5_000);
      // Then the new master dies and the old one takes over without its consent (TAKEOVER).
      await cluster.replica.stop();
      const m = new Redis(cluster.master.port);
      try {
        await waitFor(
          'the old master to take the slots back',
          async () => {
            await m.call('CLUSTER', 'FAILOVER', 'TAKEOVER').catch(() => undefined);
            return (await m.info('replication')).includes('role:master') ? true : undefined;
          },
          10_000,
          200,
        );
      } finally {
        m.disconnect();
      }
      const ended2 = monoNow();
      await c.waitForAcceptedWork(ended2, 3 * TTL + 5_000);
      c.assertSafe();
      await c.assertStreamTokensUnique();
    } finally {
      await c?.close();
      await cluster.cleanup();
    }
  });
});
