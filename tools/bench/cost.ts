import { join } from 'node:path';
import { pollUntilReady } from '../kit/http';
import type { RedisServer } from '../kit/redis';
import type { Replica } from '../kit/replica';
import { sleep } from '../kit/time';
import type { Resources } from './cleanup';
import { memoryMiB } from './proc';
import { startBenchReplica, type DistSnapshot } from './replica';
import { runLoad, type Progress } from './scenarios';
import { summarize } from './stats';

export const COST_TARGETS = {
  /** GRINDER's idle RSS may be at most this multiple of the minimal elector's. */
  rssRatioMax: 1.1,
  /** GRINDER's /readyz throughput must be at least this fraction of the minimal elector's. */
  readyzRatioMin: 0.8,
};

export interface CostResult {
  /** Median of the idle RSS samples, MiB. */
  rssMiB: { grinder: number; baseline: number };
  rssRatio: number;
  /** /readyz requests per second, one value per round, the two taking turns. */
  readyzRps: { grinder: number[]; baseline: number[] };
  readyzRatio: number;
  rounds: number;
}

const BASELINE = join(__dirname, 'baseline-elector.mjs');

const median = (xs: number[]): number => summarize(xs).median;

/**
 * GRINDER beside the minimal node:http + ioredis elector (baseline-elector.mjs), both started
 * fresh on the same Redis with the same lease timing, each ACTIVE on a lock key of its own.
 * Idle RSS is sampled at the same moments for both; /readyz load alternates between them,
 * `rounds` times each, starting with a different one every round, so that what else the
 * machine does at the time weighs on both alike.
 */
export async function costVsBaseline(
  redis: RedisServer,
  snapshot: DistSnapshot,
  res: Resources,
  connections: number,
  durationMs: number,
  rounds: number,
  log: Progress,
): Promise<CostResult> {
  const env = (key: string): Record<string, string> => ({
    GRINDER_HA_ENABLED: 'true',
    GRINDER_REDIS_URL: redis.url,
    GRINDER_HA_LOCK_TTL_MS: '1500',
    GRINDER_HA_RENEW_INTERVAL_MS: '300',
    GRINDER_HA_LOCK_KEY: key,
    GRINDER_INSTANCE_ID: 'bench-cost',
    GRINDER_LOG_LEVEL: 'warn',
  });
  const track = (r: Replica): void => res.replica(r);
  const grinder = await startBenchReplica(snapshot.mainJs, 'grinder', env('bench:cost:grinder'), track);
  const baseline = await startBenchReplica(BASELINE, 'baseline', env('bench:cost:baseline'), track);
  try {
    await Promise.all([
      pollUntilReady(grinder.port, 15_000, { agent: grinder.agent, intervalMs: 20 }),
      pollUntilReady(baseline.port, 15_000, { agent: baseline.agent, intervalMs: 20 }),
    ]);
    await sleep(3_000);
    const g: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < 5; i++) {
      g.push(memoryMiB(grinder.pid).rss);
      b.push(memoryMiB(baseline.pid).rss);
      await sleep(200);
    }
    const rssMiB = { grinder: median(g), baseline: median(b) };
    log(
      `  idle RSS: GRINDER ${rssMiB.grinder.toFixed(1)} MiB, minimal elector ${rssMiB.baseline.toFixed(1)} MiB (${(rssMiB.grinder / rssMiB.baseline).toFixed(2)}×)`,
    );

    const readyzRps = { grinder: [] as number[], baseline: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [grinder, baseline] : [baseline, grinder];
      for (const r of order) {
        const run = await runLoad(res, r, '/readyz', connections, durationMs);
        (r === grinder ? readyzRps.grinder : readyzRps.baseline).push(run.requestsPerSecond);
      }
      log(
        `  /readyz round ${round + 1}/${rounds}: GRINDER ${readyzRps.grinder.at(-1)?.toFixed(0)} req/s, minimal elector ${readyzRps.baseline.at(-1)?.toFixed(0)} req/s`,
      );
    }
    return {
      rssMiB,
      rssRatio: rssMiB.grinder / rssMiB.baseline,
      readyzRps,
      readyzRatio: median(readyzRps.grinder) / median(readyzRps.baseline),
      rounds,
    };
  } finally {
    await grinder.stop('SIGKILL');
    await baseline.stop('SIGKILL');
  }
}
