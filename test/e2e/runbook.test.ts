import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RedisServer } from '../../tools/kit/redis';
import { Replica } from '../../tools/kit/replica';
import { monoNow, sleep, waitFor } from '../../tools/kit/time';

/*
 * The operators' runbook (shared/seeds/runbook-ha-operations.md), re-enacted with real processes:
 * one redis-server with appendonly persistence (as in docker-compose.ha.yml) and two replicas run
 * as `node dist/main.js`, with a short TTL so the whole runbook takes seconds.
 * A monitor polls both /readyz side by side all the time: two 200s at once is a failure.
 */

const TTL = 1_500;
const RENEW = 300;

let redis: RedisServer;
const replicas: Replica[] = [];
const ports: number[] = [];
const ids = ['grinder_live_1', 'grinder_live_2'];

function envFor(i: number): Record<string, string> {
  return {
    GRINDER_HA_ENABLED: 'true',
    GRINDER_REDIS_URL: redis.url,
    GRINDER_HA_LOCK_TTL_MS: String(TTL),
    GRINDER_HA_RENEW_INTERVAL_MS: String(RENEW),
    GRINDER_INSTANCE_ID: ids[i] as string,
    GRINDER_LOG_LEVEL: 'info',
  };
}

async function startReplica(i: number): Promise<Replica> {
  const r = await Replica.start({ env: envFor(i), ...(ports[i] === undefined ? {} : { port: ports[i] }) });
  ports[i] = r.port;
  replicas[i] = r;
  return r;
}

const rep = (i: number): Replica => replicas[i] as Replica;

/** Watches both replicas side by side until stopped; records every poll where both said 200. */
class SplitBrainMonitor {
  doubleActive: string[] = [];
  polls = 0;
  private running = true;
  private readonly loop: Promise<void>;
  constructor() {
    this.loop = (async () => {
      while (this.running) {
        const answers = await Promise.all(replicas.map((r) => (r.alive ? r.readyRole() : Promise.resolve('down'))));
        this.polls++;
        if (answers.filter((a) => a === 'active').length > 1) this.doubleActive.push(`${new Date().toISOString()} ${answers.join(',')}`);
        await sleep(5);
      }
    })();
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

async function roles(): Promise<string[]> {
  return Promise.all(replicas.map((r) => (r.alive ? r.readyRole() : Promise.resolve('down'))));
}

async function roleMetricLine(r: Replica): Promise<string[]> {
  const m = await r.get('/metrics');
  return m.body.split('\n').filter((l) => l.startsWith('grinder_ha_role{'));
}

// The runbook's expected lines: the role label first, then the cluster (the lock key by default).
const ACTIVE_LINE = 'grinder_ha_role{role="active",grinder_cluster="grinder:leader:lock"} 1';
const STANDBY_LINE = 'grinder_ha_role{role="standby",grinder_cluster="grinder:leader:lock"} 1';

async function assertRoleMetrics(active: Replica, standby: Replica): Promise<void> {
  assert.ok((await roleMetricLine(active)).includes(ACTIVE_LINE), `the active replica reports ${ACTIVE_LINE}`);
  assert.ok((await roleMetricLine(standby)).includes(STANDBY_LINE), `the standby replica reports ${STANDBY_LINE}`);
}

/** Waits for exactly one ACTIVE replica among those alive and returns its index. */
async function exactlyOneActive(timeoutMs: number): Promise<number> {
  return waitFor(
    'exactly one ACTIVE replica',
    async () => {
      const rs = await roles();
      const active = rs.flatMap((r, i) => (r === 'active' ? [i] : []));
      return active.length === 1 ? active[0] : undefined;
    },
    timeoutMs,
  );
}

let monitor: SplitBrainMonitor;

before(async () => {
  redis = await RedisServer.start({ persistent: true });
  await startReplica(0);
  await startReplica(1);
  monitor = new SplitBrainMonitor();
});

after(async () => {
  await monitor.stop();
  for (const r of replicas) await r.stop('SIGKILL');
  await redis.cleanup();
});

/** CLOCK_MONOTONIC ms of the replica's latest "role changed … to active" record. */
function becameActiveAt(r: Replica): number {
  const line = r
    .logsWith('role changed')
    .filter((l) => l.to === 'active')
    .at(-1);
  assert.ok(line, 'the replica logged no change to active');
  return Number(line.mono_ms);
}

describe('runbook: HA operations, re-enacted with processes', () => {
  let activeIdx = -1;

  it('3. exactly one replica answers 200 {"ready": true, "role": "active"}, the other 503 standby', async () => {
    // A Redis that never saw GRINDER holds everyone off for one TTL (the data-loss barrier).
    activeIdx = await exactlyOneActive(TTL * 4);
    const active = rep(activeIdx);
    const standby = rep(1 - activeIdx);
    const a = await active.get('/readyz');
    const s = await standby.get('/readyz');
    assert.equal(a.status, 200);
    assert.equal(a.body, '{"ready": true, "role": "active"}');
    assert.equal(s.status, 503);
    assert.equal(s.body, '{"ready": false, "role": "standby"}');
    await assertRoleMetrics(active, standby);
  });

  it('failover: SIGKILL the active one, the other is ACTIVE within TTL + one renew interval', async () => {
    const victim = rep(activeIdx);
    const survivor = rep(1 - activeIdx);
    const killedAt = monoNow();
    await victim.stop('SIGKILL');
    await waitFor('the survivor to become ACTIVE', async () => ((await survivor.readyRole()) === 'active' ? true : undefined), TTL * 3, 5);
    // When the survivor became ACTIVE by its own record (CLOCK_MONOTONIC, shared by every process
    // here), not when this busy test process got round to seeing it.
    const took = becameActiveAt(survivor) - killedAt;
    console.log(`# crash failover took ${took.toFixed(0)} ms (TTL ${TTL} ms, renew ${RENEW} ms)`);
    assert.ok(took <= TTL + RENEW, `failover took ${took} ms, more than TTL + renew = ${TTL + RENEW} ms`);
    // Bring the victim back: it rejoins as STANDBY.
    const back = await startReplica(activeIdx);
    await waitFor('the restarted replica to be STANDBY', async () => ((await back.readyRole()) === 'standby' ? true : undefined), TTL * 2);
    await assertRoleMetrics(survivor, back);
    activeIdx = 1 - activeIdx;
  });

  it('graceful: SIGTERM the active one, handover within one renew interval, exit code 0', async () => {
    const leaving = rep(activeIdx);
    const next = rep(1 - activeIdx);
    const termAt = monoNow();
    leaving.signal('SIGTERM');
    await waitFor('the other replica to become ACTIVE', async () => ((await next.readyRole()) === 'active' ? true : undefined), TTL * 3, 2);
    const took = becameActiveAt(next) - termAt;
    console.log(`# graceful handover took ${took.toFixed(0)} ms`);
    assert.ok(took <= RENEW, `handover took ${took} ms, more than one renew interval (${RENEW} ms)`);
    assert.equal(await leaving.exited, 0, 'SIGTERM exits 0');
    assert.ok(leaving.logsWith('lease released on shutdown').length === 1);
    const back = await startReplica(activeIdx);
    await waitFor('the restarted replica to be STANDBY', async () => ((await back.readyRole()) === 'standby' ? true : undefined), TTL * 2);
    activeIdx = 1 - activeIdx;
    await assertRoleMetrics(next, back);
  });

  it('Redis failure: both become STANDBY within the TTL and neither answers 200 while it is down', async () => {
    const stoppedAt = performance.now();
    await redis.stop('SIGKILL');
    // Judge what the replica controls: when a request that got ACTIVE was SENT (it was answered
    // from the lease deadline at or after that moment), not when the answer arrived on a busy host.
    let lastActiveSentAt = stoppedAt;
    await waitFor(
      'both replicas STANDBY',
      async () => {
        const sentAt = performance.now();
        const now = await roles();
        if (now.includes('active')) lastActiveSentAt = sentAt;
        return now.every((r) => r === 'standby') ? true : undefined;
      },
      TTL * 4,
      5,
    );
    const took = lastActiveSentAt - stoppedAt;
    console.log(`# last ACTIVE answer was to a request sent ${took.toFixed(0)} ms after Redis died`);
    assert.ok(took <= TTL, `the active replica answered ACTIVE to a request sent ${took.toFixed(0)} ms after Redis died (TTL ${TTL})`);
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(await roles(), ['standby', 'standby']);
      await sleep(TTL / 5);
    }
    for (const r of replicas) {
      const lines = await roleMetricLine(r);
      assert.ok(lines.includes(STANDBY_LINE));
      const m = (await r.get('/metrics')).body;
      assert.match(m, /^grinder_ha_redis_up\{grinder_cluster="grinder:leader:lock"\} 0$/m);
      assert.match(m, /^grinder_ha_lock_failures_total\{operation="(acquire|renew)",reason="connection",grinder_cluster="grinder:leader:lock"\} [1-9]/m);
    }
  });

  it('Redis back (persistent): exactly one ACTIVE again, one TTL after it is back (what came back may be older data)', async () => {
    const startedAt = monoNow();
    await redis.startProcess();
    activeIdx = await exactlyOneActive(TTL * 4);
    // Nobody may take the record over before it stood still for one TTL after the reconnect,
    // which follows the start: a lower bound, which a busy machine can only make larger.
    const took = becameActiveAt(rep(activeIdx)) - startedAt;
    console.log(`# one ACTIVE ${took.toFixed(0)} ms after Redis restarted`);
    assert.ok(took >= TTL, `ACTIVE ${took.toFixed(0)} ms after Redis restarted, before one TTL (${TTL} ms) of watching`);
    await assertRoleMetrics(rep(activeIdx), rep(1 - activeIdx));
    const status = JSON.parse((await rep(activeIdx).get('/status')).body) as { fencing_token: number; redis_connected: boolean; holder: string };
    assert.equal(status.redis_connected, true);
    assert.equal(status.holder, ids[activeIdx]);
  });

  it('`docker logs … | grep -i lock` shows every role change (they name the lock key)', () => {
    let roleChanges = 0;
    for (const r of replicas) {
      for (const line of r.logsWith('role changed')) {
        roleChanges++;
        assert.match(JSON.stringify(line), /lock/i, 'a role-change line grep -i lock would miss');
        assert.equal(line.lock_key, 'grinder:leader:lock');
      }
    }
    assert.ok(roleChanges >= 4, `role changes seen: ${roleChanges}`);
  });

  it('never two 200s at once, through all of the above', async () => {
    await monitor.stop();
    assert.ok(monitor.polls > 100, `the monitor polled (${monitor.polls} times)`);
    assert.deepEqual(monitor.doubleActive, []);
  });
});
