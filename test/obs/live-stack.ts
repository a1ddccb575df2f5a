// A real GRINDER HA stack for the observability tests: one redis-server, the runbook's two
// replicas (node dist/main.js) and Debian's prometheus loading the shipped scrape config and rules.
//
// Everything time-related is the production setup scaled by SCALE: lease TTL 10 s → 2 s, renew
// 3 s → 0.6 s, scrape and rule evaluation 5 s → 1 s, every alert's `for:` × 0.2. The alert
// expressions are the shipped ones, byte for byte. Ratios between lease timing, scrape interval
// and `for:` are what decide whether a failover pages, and those stay as shipped.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisServer } from '../support/redis';
import { Replica } from '../support/replica';
import { PrometheusServer, SHIPPED_RULES_DIR, scaledRuleCopies, type Sample } from '../support/prometheus';
import { waitFor } from '../support/wait';

export const SCALE = 0.2;
export const TTL_MS = 10_000 * SCALE;
export const RENEW_MS = 3_000 * SCALE;
export const INTERVAL = `${5 * SCALE}s`;
export const INSTANCE_IDS = ['grinder_live_1', 'grinder_live_2'] as const;

export class LiveStack {
  readonly replicas: Replica[] = [];
  private constructor(
    readonly redis: RedisServer,
    readonly prom: PrometheusServer,
    private readonly ports: number[],
    private readonly ruleDir: string,
  ) {}

  /** Starts Redis, both replicas and Prometheus; on any failure stops what already runs. */
  static async start(opts: { persistent: boolean; ports: number[] }): Promise<LiveStack> {
    const ruleDir = mkdtempSync(join(tmpdir(), 'grinder-rules-'));
    const shipped = readdirSync(SHIPPED_RULES_DIR)
      .filter((f) => f.endsWith('.yml'))
      .map((f) => join(SHIPPED_RULES_DIR, f));
    const ruleFiles = scaledRuleCopies(shipped, ruleDir, SCALE);
    const redis = await RedisServer.start({ persistent: opts.persistent });
    let prom: PrometheusServer | undefined;
    const started: Replica[] = [];
    try {
      for (let i = 0; i < INSTANCE_IDS.length; i++) {
        started.push(await Replica.start({ port: opts.ports[i], env: replicaEnv(redis.url, i) }));
      }
      prom = await PrometheusServer.start({
        targets: opts.ports.map((p) => `127.0.0.1:${p}`),
        interval: INTERVAL,
        ruleFiles,
      });
    } catch (err) {
      for (const r of started) await r.stop();
      await redis.cleanup();
      rmSync(ruleDir, { recursive: true, force: true });
      throw err;
    }
    const stack = new LiveStack(redis, prom, opts.ports, ruleDir);
    stack.replicas.push(...started);
    return stack;
  }

  /** Starts replica `i` again on its port (as a supervisor would after a crash). */
  async restartReplica(i: number): Promise<Replica> {
    const r = await Replica.start({ port: this.ports[i], env: replicaEnv(this.redis.url, i) });
    this.replicas[i] = r;
    return r;
  }

  /** Index of the replica whose /readyz says active, if exactly one does. */
  async activeIndex(): Promise<number | undefined> {
    const roles = await Promise.all(this.replicas.map((r) => r.readyRole()));
    const active = roles.flatMap((role, i) => (role === 'active' ? [i] : []));
    return active.length === 1 ? active[0] : undefined;
  }

  /** A scalar-ish instant query: the value of the single sample, or undefined when empty. */
  async value(expr: string): Promise<number | undefined> {
    const r = await this.prom.query(expr);
    const result = r.result as Sample[];
    if (result.length === 0 || !result[0]?.value) return undefined;
    return Number(result[0].value[1]);
  }

  /** Waits until Prometheus itself sees exactly one ACTIVE replica and both targets up. */
  async waitForSteadyState(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      'Prometheus to see both replicas up and exactly one ACTIVE',
      async () => {
        const active = await this.value('grinder:ha_active_replicas:count');
        const up = await this.value('grinder:ha_replicas_up:sum');
        return active === 1 && up === 2 ? true : undefined;
      },
      timeoutMs,
      250,
    );
  }

  async firing(alertname: string): Promise<boolean> {
    const alerts = await this.prom.alerts();
    return alerts.some((a) => a.labels.alertname === alertname && a.state === 'firing');
  }

  async stop(): Promise<void> {
    for (const r of this.replicas) await r.stop();
    await this.prom.stop();
    await this.redis.cleanup();
    rmSync(this.ruleDir, { recursive: true, force: true });
  }
}

function replicaEnv(redisUrl: string, i: number): Record<string, string> {
  return {
    GRINDER_HA_ENABLED: 'true',
    GRINDER_REDIS_URL: redisUrl,
    GRINDER_HA_LOCK_TTL_MS: String(TTL_MS),
    GRINDER_HA_RENEW_INTERVAL_MS: String(RENEW_MS),
    GRINDER_INSTANCE_ID: INSTANCE_IDS[i] as string,
    GRINDER_LOG_LEVEL: 'warn',
  };
}
