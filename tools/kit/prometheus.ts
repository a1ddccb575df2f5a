import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { endProcess } from './children';
import { freePort } from './ports';
import { REPO_ROOT } from './replica';
import { waitFor } from './time';

export const SHIPPED_PROMETHEUS_YML = join(REPO_ROOT, 'prometheus', 'prometheus.yml');
export const SHIPPED_RULES_DIR = join(REPO_ROOT, 'prometheus', 'rules');

/** The job in the shipped prometheus.yml that scrapes the GRINDER replicas. */
export const GRINDER_JOB = 'grinder';

export interface PrometheusOptions {
  /**
   * host:port of each replica, replacing the compose service names of the shipped config; or
   * 'file-sd': the targets come from a file the test rewrites (PrometheusServer.setTargets).
   */
  targets: string[] | 'file-sd';
  /** Scrape and rule evaluation interval, e.g. '1s'. Default '1s'. */
  interval?: string;
  /** Rule files to load (absolute paths). Default: none. */
  ruleFiles?: string[];
  /** host:port of the Alertmanager to notify; without it, alerting is left out. */
  alertmanager?: string;
  /** More command-line flags for prometheus. */
  flags?: string[];
}

export interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

export interface QueryResult {
  resultType: 'vector' | 'matrix' | 'scalar' | 'string';
  result: Sample[] | [number, string];
}

export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
  value: string;
}

interface ApiAnswer<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

type Yaml = Record<string, unknown>;

function isRecord(v: unknown): v is Yaml {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The shipped prometheus.yml, adapted to a test: the grinder job scrapes `targets` instead of the
 * compose service names, intervals are short, rules come from `ruleFiles`, and there is no
 * Alertmanager (alerts are read from Prometheus' own /api/v1/alerts). Everything else — job name,
 * metrics path, the other jobs — stays as shipped, so a broken shipped config breaks the test.
 */
export function adaptShippedConfig(opts: PrometheusOptions & { selfAddress?: string; targetsFile?: string }): Yaml {
  const cfg = parse(readFileSync(SHIPPED_PROMETHEUS_YML, 'utf8')) as unknown;
  if (!isRecord(cfg)) throw new Error('prometheus/prometheus.yml is not a YAML mapping');
  const interval = opts.interval ?? '1s';
  const global = isRecord(cfg.global) ? cfg.global : {};
  cfg.global = { ...global, scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval };
  cfg.rule_files = opts.ruleFiles ?? [];
  const alerting = isRecord(cfg.alerting) ? cfg.alerting : {};
  if (opts.alertmanager) {
    // The shipped alert relabelling stays; only the Alertmanager address is the test's.
    cfg.alerting = { ...alerting, alertmanagers: [{ static_configs: [{ targets: [opts.alertmanager] }] }] };
  } else {
    delete cfg.alerting;
  }
  const jobs = Array.isArray(cfg.scrape_configs) ? (cfg.scrape_configs as unknown[]) : [];
  const grinder = jobs.find((j): j is Yaml => isRecord(j) && j.job_name === GRINDER_JOB);
  if (!grinder) throw new Error(`prometheus/prometheus.yml has no job_name: ${GRINDER_JOB}`);
  if (opts.targets === 'file-sd') {
    delete grinder.static_configs;
    grinder.file_sd_configs = [{ files: [opts.targetsFile ?? ''], refresh_interval: interval }];
  } else {
    grinder.static_configs = [{ targets: opts.targets }];
  }
  // The other job scrapes Prometheus itself (its rule-evaluation and notification metrics): at
  // the test's own address, or left out.
  const self = jobs.find((j): j is Yaml => isRecord(j) && j.job_name === 'prometheus');
  if (self && opts.selfAddress) self.static_configs = [{ targets: [opts.selfAddress] }];
  cfg.scrape_configs = self && opts.selfAddress ? [grinder, self] : [grinder];
  return cfg;
}

/**
 * Copies rule files into `dir` with every duration multiplied by `factor`: group intervals, each
 * alert's `for:`, and the range selectors, subquery steps and offsets in every expression. Nothing
 * else changes: thresholds on seconds are relative to the replicas' own (equally scaled) TTL
 * metrics, and counts stay counts. Returns the new paths.
 */
export function scaledRuleCopies(files: string[], dir: string, factor: number): string[] {
  return files.map((file, i) => {
    const doc = parse(readFileSync(file, 'utf8')) as unknown;
    if (!isRecord(doc) || !Array.isArray(doc.groups)) throw new Error(`${file}: no rule groups`);
    for (const group of doc.groups as unknown[]) {
      if (!isRecord(group) || !Array.isArray(group.rules)) continue;
      if (typeof group.interval === 'string') group.interval = formatMs(parseDurationMs(group.interval) * factor);
      for (const rule of group.rules as unknown[]) {
        if (!isRecord(rule)) continue;
        if (typeof rule.alert === 'string' && typeof rule.for === 'string') rule.for = formatMs(parseDurationMs(rule.for) * factor);
        if (typeof rule.expr === 'string') rule.expr = scaleExprDurations(rule.expr, factor);
      }
    }
    const out = join(dir, `scaled-${i}.yml`);
    writeFileSync(out, stringify(doc));
    return out;
  });
}

/** `[5m]` → `[60000ms]` (factor 0.2), `[1m:5s]` → `[12000ms:1000ms]`, `offset 10s` → `offset 2000ms`. */
export function scaleExprDurations(expr: string, factor: number): string {
  const d = '((?:\\d+(?:ms|s|m|h|d))+)';
  const scale = (x: string): string => formatMs(parseDurationMs(x) * factor);
  return expr
    .replace(
      new RegExp(`\\[${d}(?::${d}?)?\\]`, 'g'),
      (_m, range: string, step: string | undefined) => `[${scale(range)}${step === undefined ? (_m.includes(':') ? ':' : '') : `:${scale(step)}`}]`,
    )
    .replace(new RegExp(`\\boffset\\s+${d}`, 'g'), (_m, off: string) => `offset ${scale(off)}`);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Prometheus duration ('1m30s', '500ms', '0s') → milliseconds. */
export function parseDurationMs(d: string): number {
  const re = /(\d+)(ms|s|m|h|d)/g;
  let total = 0;
  let consumed = '';
  for (let m = re.exec(d); m !== null; m = re.exec(d)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    consumed += m[0];
  }
  if (consumed !== d || d === '') throw new Error(`not a Prometheus duration: ${JSON.stringify(d)}`);
  return total;
}

function formatMs(ms: number): string {
  return `${Math.max(0, Math.round(ms))}ms`;
}

/** Debian's `prometheus` binary on a free port, with its own temp storage and a generated config. */
export class PrometheusServer {
  readonly port: number;
  readonly dir: string;
  readonly output: string[] = [];
  private proc: ChildProcess | undefined;

  private constructor(port: number, dir: string, proc: ChildProcess) {
    this.port = port;
    this.dir = dir;
    this.proc = proc;
    proc.stdout?.on('data', (c: Buffer) => this.output.push(c.toString()));
    proc.stderr?.on('data', (c: Buffer) => this.output.push(c.toString()));
    proc.once('exit', () => {
      this.proc = undefined;
    });
  }

  static async start(opts: PrometheusOptions): Promise<PrometheusServer> {
    const dir = mkdtempSync(join(tmpdir(), 'grinder-prometheus-'));
    const configPath = join(dir, 'prometheus.yml');
    const port = await freePort();
    const targetsFile = join(dir, 'targets.json');
    if (opts.targets === 'file-sd') writeFileSync(targetsFile, '[]');
    writeFileSync(configPath, stringify(adaptShippedConfig({ ...opts, selfAddress: `127.0.0.1:${port}`, targetsFile })));
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${configPath}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1d',
        ...(opts.flags ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const spawnError = new Promise<Error>((resolve) => proc.once('error', resolve));
    const server = new PrometheusServer(port, dir, proc);
    try {
      await Promise.race([
        waitFor(
          `prometheus on port ${port} to be ready`,
          async () => {
            if (!server.proc) throw new Error(`prometheus exited:\n${server.output.join('')}`);
            const r = await fetch(`${server.url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
            return r.ok ? true : undefined;
          },
          20_000,
          100,
        ),
        spawnError.then((err) => {
          throw new Error(`could not start prometheus (apt-get install prometheus): ${err.message}`);
        }),
      ]);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Replaces the grinder job's targets (file-sd only). Written to a temp file and renamed, so
   * Prometheus never reads half a file; it notices within a second (inotify, or the refresh).
   */
  setTargets(targets: string[]): void {
    const file = join(this.dir, 'targets.json');
    writeFileSync(`${file}.tmp`, JSON.stringify([{ targets }]));
    renameSync(`${file}.tmp`, file);
  }

  /** GET for parameterless endpoints (some, like /api/v1/alerts, accept nothing else), POST for queries. */
  private async api<T>(path: string, params: Record<string, string> = {}): Promise<T> {
    const hasParams = Object.keys(params).length > 0;
    const res = await fetch(`${this.url}${path}`, {
      method: hasParams ? 'POST' : 'GET',
      ...(hasParams ? { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as ApiAnswer<T>;
    if (body.status !== 'success') {
      throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${body.errorType ?? ''}: ${body.error ?? res.status}`);
    }
    return body.data;
  }

  /** Instant query; throws with Prometheus' own message when the expression does not parse. */
  query(expr: string, time?: number): Promise<QueryResult> {
    const params: Record<string, string> = { query: expr };
    if (time !== undefined) params.time = String(time);
    return this.api<QueryResult>('/api/v1/query', params);
  }

  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<QueryResult> {
    return this.api<QueryResult>('/api/v1/query_range', {
      query: expr,
      start: String(start),
      end: String(end),
      step: String(stepSeconds),
    });
  }

  async alerts(): Promise<PromAlert[]> {
    const data = await this.api<{ alerts: PromAlert[] }>('/api/v1/alerts');
    return data.alerts;
  }

  async targetsUp(): Promise<number> {
    const r = await this.query(`sum(up{job="${GRINDER_JOB}"})`);
    const v = Array.isArray(r.result) && r.result.length > 0 ? (r.result[0] as Sample).value : undefined;
    return v ? Number(v[1]) : 0;
  }

  async stop(): Promise<void> {
    if (this.proc) await endProcess(this.proc, 'SIGTERM', 5_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
