/**
 * npm run bench [-- --trials N] [--quick] [--only NAME,...] [--json FILE] [--connections N] [--load-seconds S]
 *
 * Measures GRINDER HA with real processes (a redis-server of its own on a free port, two replicas
 * run from a snapshot of dist/) and prints a Markdown table; the full results go to a JSON file.
 * See docs/benchmarks.md for what each figure means and the latest results.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem, type } from 'node:os';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RedisServer } from '../kit/redis';
import { REPO_ROOT } from '../kit/replica';
import { Resources } from './cleanup';
import { Pair, type LeaseTimingConfig } from './cluster';
import { costVsBaseline, type CostResult } from './cost';
import { initScenario, switchoverScenario } from './commands';
import { evaluateTargets, renderMarkdown, type BenchResult, type ConfigResult, type Machine } from './report';
import { DistSnapshot } from './replica';
import { sentinelFailover, type SentinelResult } from './sentinel';
import { crashFailover, gracefulHandover, loadAndMemory, redisRecovery, type LoadAndMemory } from './scenarios';
import { round } from './stats';
import { errMessage } from '../../src/error-text';

/** The scenarios, in the order they run; --only picks some of them. */
const SCENARIOS = ['crash', 'graceful', 'redis-restart', 'switchover', 'init', 'load', 'cost', 'sentinel'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Options {
  trials: number;
  quick: boolean;
  json: string;
  connections: number;
  loadSeconds: number;
  /** The scenarios to run; null: all of them. */
  only: Set<ScenarioName> | null;
}

const USAGE = `usage: npm run bench -- [--trials N] [--quick] [--only NAME,...] [--json FILE] [--connections N] [--load-seconds S]
  --trials N         trials per failover scenario and lease timing (default 10; 3 with --quick)
  --quick            smoke run: short TTL only, 3 trials, 1 s of load
  --only NAME,...    run only these scenarios (default all): ${SCENARIOS.join(', ')}
  --json FILE        where to write the full results (default bench-results/bench.json)
  --connections N    concurrent keep-alive connections of the load generator (default 50)
  --load-seconds S   seconds of load per endpoint (default 5; 1 with --quick)`;

function parseOptions(argv: readonly string[]): Options {
  let trials: number | null = null;
  let loadSeconds: number | null = null;
  const o: Options = { trials: 10, quick: false, json: 'bench-results/bench.json', connections: 50, loadSeconds: 5, only: null };
  const positive = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 1) throw new Error(`${name} needs a whole number ≥ 1, got ${String(v)}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (name) {
      case '--trials':
        trials = positive(name, value());
        break;
      case '--quick':
        o.quick = true;
        break;
      case '--json': {
        const v = value();
        if (!v) throw new Error(`--json needs a file name\n${USAGE}`);
        o.json = v;
        break;
      }
      case '--only': {
        const names = (value() ?? '')
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== '');
        if (names.length === 0) throw new Error(`--only needs one or more of ${SCENARIOS.join(', ')}\n${USAGE}`);
        const unknown = names.filter((x) => !(SCENARIOS as readonly string[]).includes(x));
        if (unknown.length > 0) throw new Error(`--only: unknown scenario ${unknown.join(', ')}; choose from ${SCENARIOS.join(', ')}\n${USAGE}`);
        o.only = new Set([...(o.only ?? []), ...(names as ScenarioName[])]);
        break;
      }
      case '--connections':
        o.connections = positive(name, value());
        break;
      case '--load-seconds':
        loadSeconds = positive(name, value());
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  o.trials = trials ?? (o.quick ? 3 : 10);
  o.loadSeconds = loadSeconds ?? (o.quick ? 1 : 5);
  return o;
}

function machine(): Machine {
  let redisServer = 'redis-server ?';
  try {
    const v = /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }));
    redisServer = `redis-server ${v?.[1] ?? '?'}`;
  } catch {
    // reported as unknown
  }
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model.trim() ?? 'unknown CPU',
    totalMemoryGiB: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    os: `${type()} ${release()}`,
    redisServer,
  };
}

function gitInfo(): { commit: string; srcDirty: boolean } {
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  try {
    return { commit: git('rev-parse', '--short', 'HEAD'), srcDirty: git('status', '--porcelain', '--', 'src').length > 0 };
  } catch {
    return { commit: 'unknown', srcDirty: false };
  }
}

/** Rounds every number in the JSON to the microsecond; samples are measured no finer. */
function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isInteger(value) ? round(value, 3) : value;
}

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const runs = (opts: Options, name: ScenarioName): boolean => opts.only === null || opts.only.has(name);

async function benchConfig(
  timing: LeaseTimingConfig,
  opts: Options,
  res: Resources,
  snapshot: DistSnapshot,
  withLoad: boolean,
): Promise<{ config: ConfigResult; load: LoadAndMemory | null; loadError: string | null }> {
  log(`\n== TTL ${timing.ttlMs} ms, renew ${timing.renewMs} ms (${timing.label}) ==`);
  const config: ConfigResult = { timing, firstActiveMs: null, crash: null, graceful: null, redisRestart: null, switchover: null, init: null };
  let load: LoadAndMemory | null = null;
  let loadError: string | null = null;
  const onPair = runs(opts, 'crash') || runs(opts, 'graceful') || runs(opts, 'redis-restart') || (withLoad && runs(opts, 'load'));
  if (onPair) {
    const t0 = performance.now();
    const pair = await Pair.start(timing, snapshot, res);
    try {
      // A Redis that never saw GRINDER holds everyone off for one TTL (the data-loss barrier).
      await pair.settled(timing.ttlMs * 3 + 10_000);
      config.firstActiveMs = performance.now() - t0;
      log(`  first ACTIVE ${config.firstActiveMs.toFixed(0)} ms after start (data-loss barrier)`);
      if (runs(opts, 'crash')) config.crash = await crashFailover(pair, opts.trials, log);
      if (runs(opts, 'graceful')) config.graceful = await gracefulHandover(pair, opts.trials, log);
      if (runs(opts, 'redis-restart')) config.redisRestart = await redisRecovery(pair, opts.trials, log);
      if (withLoad && runs(opts, 'load')) {
        try {
          load = await loadAndMemory(pair, res, opts.connections, opts.loadSeconds * 1_000, log);
        } catch (err) {
          // Keep the failover figures of a long run even when the load part breaks.
          loadError = errMessage(err);
          log(`  load/memory failed: ${loadError}`);
        }
      }
    } finally {
      await pair.close();
    }
  }
  // A pair of their own: these read the replicas' role-change lines, logged at info, which the
  // failover figures above are measured without.
  if (runs(opts, 'switchover')) {
    log(`  -- grinder switchover (pair logging at info)`);
    config.switchover = await switchoverScenario(timing, snapshot, res, opts.trials, log);
  }
  if (runs(opts, 'init')) {
    log(`  -- grinder init (a fresh redis-server per trial)`);
    config.init = await initScenario(timing, snapshot, res, opts.trials, log);
  }
  return { config, load, loadError };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const res = new Resources();
  let closing = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (closing) return;
    closing = true;
    process.stderr.write(`\nbench: ${sig}: stopping every process it started\n`);
    const force = setTimeout(() => process.exit(130), 3_000);
    void res.closeAll().finally(() => {
      clearTimeout(force);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => res.killAllNow());

  const m = machine();
  const git = gitInfo();
  log(
    `GRINDER HA bench: ${m.cpus} CPUs (${m.cpuModel}), Node ${m.node}, ${m.redisServer}, commit ${git.commit}${git.srcDirty ? ' (src/ has uncommitted changes)' : ''}`,
  );
  log(
    `trials ${opts.trials}${opts.quick ? ' (quick)' : ''}, load ${opts.connections} connections × ${opts.loadSeconds} s${opts.only ? `; only ${[...opts.only].join(', ')}` : ''}`,
  );

  const snapshot = res.snapshot(new DistSnapshot());
  const timings: LeaseTimingConfig[] = [{ label: 'short', ttlMs: 1_500, renewMs: 300 }];
  if (!opts.quick) timings.push({ label: 'default', ttlMs: 10_000, renewMs: 3_000 });

  const configs: ConfigResult[] = [];
  let load: LoadAndMemory | null = null;
  let sentinel: SentinelResult | null = null;
  const loadErrors: string[] = [];
  let cost: CostResult | null = null;
  try {
    const everyTiming: ScenarioName[] = ['crash', 'graceful', 'redis-restart', 'switchover', 'init'];
    for (const [i, timing] of timings.entries()) {
      const last = i === timings.length - 1;
      // The load runs on the last timing only.
      if (!everyTiming.some((n) => runs(opts, n)) && !(last && runs(opts, 'load'))) continue;
      const r = await benchConfig(timing, opts, res, snapshot, last);
      configs.push(r.config);
      load = r.load ?? load;
      if (r.loadError) loadErrors.push(`load/memory: ${r.loadError}`);
    }
    if (runs(opts, 'cost')) {
      log('\n== cost: GRINDER beside a minimal node:http + ioredis elector ==');
      try {
        const redis = res.redis(await RedisServer.start());
        cost = await costVsBaseline(redis, snapshot, res, opts.connections, opts.loadSeconds * 1_000, opts.quick ? 1 : 3, log);
        await res.releaseRedis(redis);
      } catch (err) {
        loadErrors.push(`cost: ${errMessage(err)}`);
        log(`  cost comparison failed: ${loadErrors.at(-1) ?? ''}`);
      }
    }
    if (runs(opts, 'sentinel')) {
      const short = timings[0] as LeaseTimingConfig;
      log(`\n== Sentinel master kill, TTL ${short.ttlMs} ms, renew ${short.renewMs} ms, Sentinel down-after 1000 ms ==`);
      sentinel = await sentinelFailover(short, Math.max(5, opts.quick ? 5 : opts.trials), snapshot, res, log);
    }
  } finally {
    await res.closeAll();
  }

  const failures = configs
    .flatMap((c) => {
      const at = `${c.timing.ttlMs}/${c.timing.renewMs}`;
      return [
        ...(c.crash?.failures ?? []).map((x) => `crash ${at} ${x}`),
        ...(c.graceful?.failures ?? []).map((x) => `graceful ${at} ${x}`),
        ...(c.redisRestart?.failures ?? []).map((x) => `redis restart ${at} ${x}`),
        ...(c.switchover?.failures ?? []).map((x) => `switchover ${at} ${x}`),
        ...[...(c.init?.withInit.failures ?? []), ...(c.init?.withoutInit.failures ?? [])].map((x) => `init ${at} ${x}`),
      ];
    })
    .concat(loadErrors, sentinel?.failures ?? []);
  const result: BenchResult = {
    date: new Date().toISOString(),
    machine: m,
    git,
    options: { trials: opts.trials, quick: opts.quick, connections: opts.connections, loadSeconds: opts.loadSeconds, only: opts.only ? [...opts.only] : null },
    configs,
    load,
    cost,
    sentinel,
    targets: evaluateTargets(configs),
    failures,
  };
  log('');
  log(renderMarkdown(result));
  const file = resolve(opts.json);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, jsonReplacer, 2)}\n`);
  log(`\nfull results: ${file}`);
  // A failed trial is a bug to look at; a missed target is a measurement and does not fail the run.
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
