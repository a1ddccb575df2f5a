import { performance } from 'node:perf_hooks';
import { httpGet } from '../kit/http';
import { SentinelSetup } from '../kit/redis-topologies';
import type { Replica } from '../kit/replica';
import { sleep } from '../kit/time';
import type { Resources } from './cleanup';
import type { LeaseTimingConfig } from './cluster';
import { startBenchReplica, type DistSnapshot } from './replica';
import { series, type Series } from './scenarios';
import { errMessage } from '../../src/error-text';

/**
 * Leader recovery after a Sentinel master kill: a master, one replica and three Sentinels
 * (down-after 1 s) of the bench's own, and two replicas. Per trial, on a fresh set-up: SIGKILL
 * the master, then time until a replica answers ACTIVE on /readyz while its /status names the
 * promoted replica as master (a lease write counted on the new master), and until the Sentinels
 * named the new master.
 */
export interface SentinelResult {
  timing: LeaseTimingConfig;
  /** Master SIGKILL → an ACTIVE replica whose lease lives on the new master. */
  recovery: Series;
  /** Master SIGKILL → the Sentinels name the promoted replica. */
  promotion: Series;
  failures: string[];
}

interface StatusBody {
  role: string;
  redis_master: string | null;
}

async function status(r: Replica): Promise<StatusBody | null> {
  try {
    const a = await httpGet(r.port, '/status', { agent: r.agent, timeoutMs: 1_000 });
    return a.status === 200 ? (JSON.parse(a.body) as StatusBody) : null;
  } catch {
    return null;
  }
}

export async function sentinelFailover(
  timing: LeaseTimingConfig,
  trials: number,
  snapshot: DistSnapshot,
  res: Resources,
  log: (line: string) => void,
): Promise<SentinelResult> {
  const recovery: number[] = [];
  const promotion: number[] = [];
  const failures: string[] = [];
  for (let t = 1; t <= trials; t++) {
    const setup = await SentinelSetup.start();
    const replicas: Replica[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const env = {
          GRINDER_HA_ENABLED: 'true',
          GRINDER_REDIS_URL: setup.url,
          GRINDER_HA_LOCK_TTL_MS: String(timing.ttlMs),
          GRINDER_HA_RENEW_INTERVAL_MS: String(timing.renewMs),
          GRINDER_INSTANCE_ID: `bench-sentinel-${i + 1}`,
          GRINDER_LOG_LEVEL: 'warn',
        };
        replicas.push(await startBenchReplica(snapshot.mainJs, `bench-sentinel-${i + 1}`, env, (x) => res.replica(x)));
      }
      const deadline = performance.now() + timing.ttlMs * 4 + 10_000;
      while ((await Promise.all(replicas.map((r) => r.readyRole(1_000)))).filter((x) => x === 'active').length !== 1) {
        if (performance.now() > deadline) throw new Error('no leader before the master kill');
        await sleep(20);
      }
      await sleep(Math.random() * timing.renewMs + timing.renewMs);
      const newMaster = `127.0.0.1:${setup.replica.port}`;
      const killedAt = performance.now();
      await setup.master.stop();
      let promotedAt: number | null = null;
      let recoveredAt: number | null = null;
      const until = killedAt + timing.ttlMs * 3 + 20_000;
      while (recoveredAt === null && performance.now() < until) {
        if (promotedAt === null && (await setup.masterPort().catch(() => 0)) === setup.replica.port) promotedAt = performance.now();
        const seen = await Promise.all(replicas.map(status));
        if (seen.some((s) => s?.role === 'active' && s.redis_master === newMaster)) recoveredAt = performance.now();
        else await sleep(10);
      }
      if (recoveredAt === null) throw new Error(`no ACTIVE replica on the new master within ${Math.round(until - killedAt)} ms`);
      recovery.push(recoveredAt - killedAt);
      if (promotedAt !== null) promotion.push(promotedAt - killedAt);
      log(
        `  sentinel ${t}/${trials}: master killed → Sentinels promoted the replica ${promotedAt === null ? '?' : (promotedAt - killedAt).toFixed(0)} ms, one ACTIVE on it ${(recoveredAt - killedAt).toFixed(0)} ms`,
      );
    } catch (err) {
      failures.push(`sentinel trial ${t}: ${errMessage(err)}`);
      log(`  sentinel ${t}/${trials}: failed: ${errMessage(err)}`);
    } finally {
      for (const r of replicas) await r.stop('SIGKILL');
      await setup.cleanup();
    }
  }
  return { timing, recovery: series(recovery), promotion: series(promotion), failures };
}
