// The live scenario suite's stack: one Prometheus loading the shipped scrape config and the
// shipped rules with every duration scaled by SCALE, a stand-in Alertmanager that records what
// Prometheus sends, one shared redis-server, and per scenario a GRINDER cluster of its own (its own
// lock key and GRINDER_CLUSTER), each replica behind a controllable TCP proxy to its Redis.
//
// Time: the production setup × SCALE. Lease TTL 10 s → 2 s, renew 3 s → 0.6 s, live writes 1 s →
// 0.2 s, scrape and evaluation 5 s → 1 s, every `for:`, range and offset in the rules × SCALE. The
// ratios that decide whether something pages stay as shipped; prod() converts a measured time back.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChaosProxy } from '../../tools/kit/proxy';
import { freePort } from '../../tools/kit/ports';
import { PrometheusServer, SHIPPED_RULES_DIR, scaledRuleCopies, type Sample } from '../../tools/kit/prometheus';
import { RedisServer } from '../../tools/kit/redis';
import { Replica } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

export const SCALE = 0.2;
export const TTL_MS = 10_000 * SCALE;
export const RENEW_MS = 3_000 * SCALE;
export const LIVE_MS = 1_000 * SCALE;
export const SCRAPE_S = 5 * SCALE;
/** Milliseconds of this suite for `seconds` of production time. */
export const P = (seconds: number): number => seconds * 1000 * SCALE;
/** Production seconds for `ms` measured here. */
export const prod = (ms: number): number => ms / 1000 / SCALE;

export const nowS = (): number => Date.now() / 1000;

/** What Prometheus POSTs to /api/v2/alerts, as far as the suite reads it. */
export interface SentAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Answers like an Alertmanager (200 to POST /api/v2/alerts) and keeps every alert it was sent. */
export class FakeAlertmanager {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly received: SentAlert[],
  ) {}

  static async start(): Promise<FakeAlertmanager> {
    const received: SentAlert[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method === 'POST' && req.url === '/api/v2/alerts') {
          try {
            received.push(...(JSON.parse(body) as SentAlert[]));
          } catch {
            // not JSON: answer anyway, the suite only counts what parses
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    // Node closes an idle keep-alive connection after 5 s; Prometheus re-sends every 12 s here, and
    // a POST that races that close fails without a retry and counts as a notification error (it
    // fired GrinderPrometheusNotificationsFailing once in CI). Like a real Alertmanager, leave idle
    // connections to the client, which closes its own safely.
    server.keepAliveTimeout = 0;
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return new FakeAlertmanager(server, port, received);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export class ScenarioStack {
  private readonly targets = new Map<string, string[]>();
  private constructor(
    readonly prom: PrometheusServer,
    readonly am: FakeAlertmanager,
    readonly redis: RedisServer,
    private readonly ruleDir: string,
  ) {}

  static async start(): Promise<ScenarioStack> {
    const ruleDir = mkdtempSync(join(tmpdir(), 'grinder-rules-'));
    const shipped = readdirSync(SHIPPED_RULES_DIR)
      .filter((f) => f.endsWith('.yml'))
      .map((f) => join(SHIPPED_RULES_DIR, f));
    const ruleFiles = scaledRuleCopies(shipped, ruleDir, SCALE);
    const am = await FakeAlertmanager.start();
    const redis = await RedisServer.start({ persistent: true });
    const prom = await PrometheusServer.start({
      targets: 'file-sd',
      interval: `${SCRAPE_S}s`,
      ruleFiles,
      alertmanager: `127.0.0.1:${am.port}`,
      // Prometheus re-sends firing alerts every minute by default; scaled like everything else.
      flags: [`--rules.alert.resend-delay=${Math.round(P(60))}ms`],
    });
    return new ScenarioStack(prom, am, redis, ruleDir);
  }

  setTargets(cluster: string, targets: string[]): void {
    if (targets.length === 0) this.targets.delete(cluster);
    else this.targets.set(cluster, targets);
    this.prom.setTargets([...this.targets.values()].flat());
  }

  /** The alerts of `cluster` that were firing at some point in [start, end], with when they first were. */
  async firedAlerts(cluster: string, start: number, end: number): Promise<Map<string, number>> {
    const r = await this.prom.queryRange(`ALERTS{alertstate="firing", grinder_cluster="${cluster}"}`, start, end, SCRAPE_S);
    const first = new Map<string, number>();
    for (const s of r.result as Sample[]) {
      const name = s.metric.alertname ?? '?';
      const t = Number(s.values?.[0]?.[0] ?? Number.NaN);
      if (!first.has(name) || t < (first.get(name) as number)) first.set(name, t);
    }
    return first;
  }

  async value(expr: string): Promise<number | undefined> {
    const r = (await this.prom.query(expr)).result as Sample[];
    return r[0]?.value ? Number(r[0].value[1]) : undefined;
  }

  async stop(): Promise<void> {
    await this.prom.stop();
    await this.am.stop().catch(() => undefined);
    await this.redis.cleanup();
    rmSync(this.ruleDir, { recursive: true, force: true });
  }
}

export interface ClusterOptions {
  replicas?: number;
  /** A Redis of the scenario's own (to stop and start); default the shared one. */
  redis?: RedisServer;
  /** Lock key per replica; default one key for all (`grinder:test:<name>:lock`). */
  lockKeys?: string[];
}

/** One GRINDER cluster: replicas on fixed ports (so their scrape targets stay), each via a proxy. */
export class Cluster {
  readonly replicas: (Replica | undefined)[] = [];
  private constructor(
    private readonly stack: ScenarioStack,
    readonly name: string,
    readonly redis: RedisServer,
    readonly ports: number[],
    readonly proxies: ChaosProxy[],
    private readonly lockKeys: string[],
  ) {}

  static async start(stack: ScenarioStack, name: string, opts: ClusterOptions = {}): Promise<Cluster> {
    const n = opts.replicas ?? 2;
    const redis = opts.redis ?? stack.redis;
    const ports: number[] = [];
    const proxies: ChaosProxy[] = [];
    for (let i = 0; i < n; i++) {
      ports.push(await freePort());
      proxies.push(await ChaosProxy.start({ targetPort: redis.port }));
    }
    const keys = opts.lockKeys ?? Array.from({ length: n }, () => `grinder:test:${name}:lock`);
    const c = new Cluster(stack, name, redis, ports, proxies, keys);
    for (let i = 0; i < n; i++) await c.start(i);
    stack.setTargets(
      name,
      ports.map((p) => `127.0.0.1:${p}`),
    );
    return c;
  }

  id(i: number): string {
    return `${this.name}-${i + 1}`;
  }

  async start(i: number): Promise<Replica> {
    const r = await Replica.start({
      port: this.ports[i],
      env: {
        GRINDER_HA_ENABLED: 'true',
        GRINDER_REDIS_URL: `redis://127.0.0.1:${(this.proxies[i] as ChaosProxy).port}/0`,
        GRINDER_HA_LOCK_TTL_MS: String(TTL_MS),
        GRINDER_HA_RENEW_INTERVAL_MS: String(RENEW_MS),
        GRINDER_HA_LOCK_KEY: this.lockKeys[i] as string,
        GRINDER_CLUSTER: this.name,
        GRINDER_INSTANCE_ID: this.id(i),
        GRINDER_LIVE_INTERVAL_MS: String(LIVE_MS),
        GRINDER_LOG_LEVEL: 'warn',
      },
    });
    this.replicas[i] = r;
    return r;
  }

  proxy(i: number): ChaosProxy {
    const p = this.proxies[i];
    if (!p) throw new Error(`${this.id(i)} has no proxy`);
    return p;
  }

  replica(i: number): Replica {
    const r = this.replicas[i];
    if (!r) throw new Error(`${this.id(i)} is not running`);
    return r;
  }

  async roles(): Promise<string[]> {
    return Promise.all(this.replicas.map((r) => (r?.alive ? r.readyRole() : Promise.resolve('down'))));
  }

  /** Waits until replica `i` answers /readyz with `role`. */
  async becomes(i: number, role: 'active' | 'standby', pollMs = 20, timeoutMs = 4 * TTL_MS): Promise<void> {
    await waitFor(`${this.id(i)} to be ${role}`, async () => ((await this.replica(i).readyRole()) === role ? true : undefined), timeoutMs, pollMs);
  }

  /** Index of the one replica whose /readyz says active, or undefined. */
  async activeIndex(): Promise<number | undefined> {
    const active = (await this.roles()).flatMap((role, i) => (role === 'active' ? [i] : []));
    return active.length === 1 ? active[0] : undefined;
  }

  async status(i: number): Promise<{ fencing_token: number | null; redis_connected: boolean | null; role: string }> {
    return JSON.parse((await this.replica(i).get('/status')).body) as { fencing_token: number | null; redis_connected: boolean | null; role: string };
  }

  /** One replica ACTIVE, and Prometheus sees it and every replica up. Returns the leader. */
  async steady(timeoutMs = 30_000): Promise<number> {
    const leader = await waitFor(`${this.name}: one ACTIVE replica`, () => this.activeIndex(), timeoutMs, 50);
    await waitFor(
      `${this.name}: Prometheus to see one ACTIVE and every replica up`,
      async () => {
        const active = await this.stack.value(`grinder:ha_active_replicas:count{grinder_cluster="${this.name}"}`);
        const up = await this.stack.value(`grinder:ha_replicas_up:sum{grinder_cluster="${this.name}"}`);
        return active === 1 && up === this.ports.length ? true : undefined;
      },
      timeoutMs,
      200,
    );
    return leader;
  }

  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.replicas[i]?.stop(signal);
    this.replicas[i] = undefined;
  }

  /** Takes the targets out of Prometheus, then stops everything of this cluster. */
  async stop(): Promise<void> {
    this.stack.setTargets(this.name, []);
    for (const r of this.replicas) {
      r?.signal('SIGCONT');
      await r?.stop('SIGKILL');
    }
    for (const p of this.proxies) await p.close();
  }
}
