import type { LeaseTimingConfig } from './cluster';
import type { SentinelResult } from './sentinel';
import { COST_TARGETS, type CostResult } from './cost';
import type { CrashResult, GracefulResult, LoadAndMemory, LoadRun, RecoveryResult, Series } from './scenarios';
import type { InitResult, SwitchoverResult } from './commands';

export interface Machine {
  cpus: number;
  cpuModel: string;
  totalMemoryGiB: number;
  node: string;
  os: string;
  redisServer: string;
}

/** One lease timing's results; a scenario left out with --only is null. */
export interface ConfigResult {
  timing: LeaseTimingConfig;
  /** Fresh Redis to the first ACTIVE replica (one TTL: the data-loss barrier); null when no failover scenario ran. */
  firstActiveMs: number | null;
  crash: CrashResult | null;
  graceful: GracefulResult | null;
  redisRestart: RecoveryResult | null;
  switchover: SwitchoverResult | null;
  init: InitResult | null;
}

export interface Target {
  name: string;
  timing: string;
  rule: string;
  measuredMs: number | null;
  met: boolean;
}

export interface BenchResult {
  date: string;
  machine: Machine;
  git: { commit: string; srcDirty: boolean };
  options: { trials: number; quick: boolean; connections: number; loadSeconds: number; only: string[] | null };
  configs: ConfigResult[];
  load: LoadAndMemory | null;
  /** Leader recovery after a Sentinel master kill; null when that part did not run. */
  sentinel: SentinelResult | null;
  /** GRINDER beside the minimal node:http + ioredis elector. */
  cost: CostResult | null;
  targets: Target[];
  failures: string[];
}

export const TARGETS = {
  crashAfterExpiryMedianMs: 15,
  crashAfterExpiryMaxMs: 100,
  gracefulMedianMs: 30,
  /**
   * After Redis is back every replica waits one TTL on what it finds (it may be older data come
   * back, SAFETY note): recovery is one TTL plus reconnecting and a look, at most this much more.
   */
  redisRecoveryOverTtlMs: 1_000,
  /** `grinder switchover`: old leader's step-down → new leader's start, median (and no overlap). */
  switchoverGapMedianMs: 100,
  /** `grinder init` on a fresh Redis: replicas spawned → first leader, in every trial. */
  initFirstLeaderMaxMs: 2_000,
};

const recoveryMaxMs = (ttlMs: number): number => ttlMs + TARGETS.redisRecoveryOverTtlMs;

export function evaluateTargets(configs: readonly ConfigResult[]): Target[] {
  const out: Target[] = [];
  for (const c of configs) {
    const timing = `${c.timing.ttlMs}/${c.timing.renewMs}`;
    if (c.crash) {
      const after = c.crash.afterExpiry.summary;
      out.push({
        name: "crash: ACTIVE after the dead leader's lease expired",
        timing,
        rule: `median ≤ ${TARGETS.crashAfterExpiryMedianMs} ms, every trial ≤ ${TARGETS.crashAfterExpiryMaxMs} ms`,
        measuredMs: after?.median ?? null,
        met:
          after !== null &&
          after !== undefined &&
          after.median <= TARGETS.crashAfterExpiryMedianMs &&
          after.max <= TARGETS.crashAfterExpiryMaxMs &&
          c.crash.failures.length === 0,
      });
    }
    if (c.graceful) {
      const graceful = c.graceful.handover.summary?.median ?? null;
      out.push({
        name: 'graceful handover',
        timing,
        rule: `median < ${TARGETS.gracefulMedianMs} ms`,
        measuredMs: graceful,
        met: graceful !== null && graceful < TARGETS.gracefulMedianMs && c.graceful.failures.length === 0,
      });
    }
    if (c.redisRestart) {
      const rec = c.redisRestart.recovery.summary?.max ?? null;
      out.push({
        name: 'Redis restart to one ACTIVE',
        timing,
        rule: `every trial < TTL + ${TARGETS.redisRecoveryOverTtlMs} ms`,
        measuredMs: rec,
        met: rec !== null && rec < recoveryMaxMs(c.timing.ttlMs) && c.redisRestart.failures.length === 0 && c.redisRestart.doubleActivePolls === 0,
      });
    }
    if (c.switchover) {
      const gap = c.switchover.gap.summary?.median ?? null;
      out.push({
        name: 'switchover gap',
        timing,
        rule: `median < ${TARGETS.switchoverGapMedianMs} ms, no overlap`,
        measuredMs: gap,
        met: gap !== null && gap < TARGETS.switchoverGapMedianMs && c.switchover.overlaps === 0 && c.switchover.failures.length === 0,
      });
    }
    if (c.init) {
      const first = c.init.withInit.firstLeader.summary?.max ?? null;
      out.push({
        name: 'init: first leader',
        timing,
        rule: `every trial < ${TARGETS.initFirstLeaderMaxMs} ms`,
        measuredMs: first,
        met: first !== null && first < TARGETS.initFirstLeaderMaxMs && c.init.withInit.failures.length === 0,
      });
    }
  }
  return out;
}

const f = (v: number | null | undefined, digits = 1): string => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits));

function row(cells: readonly string[]): string {
  return `| ${cells.join(' | ')} |`;
}

function seriesRow(name: string, c: ConfigResult, s: Series, target: string, met: string): string {
  return row([name, `${c.timing.ttlMs} / ${c.timing.renewMs}`, String(s.samplesMs.length), f(s.summary?.median), f(s.summary?.max), target, met]);
}

const yes = (t: Target | undefined): string => (t === undefined ? '' : t.met ? '**yes**' : '**NO**');

/** The report as Markdown, ready to paste into docs/benchmarks.md. */
export function renderMarkdown(r: BenchResult): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(
    `Run ${r.date} on ${m.cpus} CPUs (${m.cpuModel}), ${f(m.totalMemoryGiB)} GiB RAM, ${m.os}, Node ${m.node}, ${m.redisServer}; commit ${r.git.commit}${r.git.srcDirty ? ' with uncommitted src/ changes' : ''}.`,
  );
  lines.push('');
  lines.push(row(['Measurement', 'TTL / renew (ms)', 'Trials', 'Median (ms)', 'Max (ms)', 'Target', 'Met']));
  lines.push(row(['---', '---', '---:', '---:', '---:', '---', '---']));
  for (const c of r.configs) {
    const timing = `${c.timing.ttlMs}/${c.timing.renewMs}`;
    const t = (prefix: string): Target | undefined => r.targets.find((x) => x.timing === timing && x.name.startsWith(prefix));
    if (c.crash) {
      lines.push(seriesRow("Crash failover: SIGKILL of the ACTIVE → the other's 200 on /readyz", c, c.crash.failover, '—', ''));
      lines.push(seriesRow('… lease time left at the kill (last renewal + TTL)', c, c.crash.leaseLeftAtKill, '—', ''));
      lines.push(
        seriesRow(
          "… ACTIVE after the dead leader's lease expired",
          c,
          c.crash.afterExpiry,
          `median ≤ ${TARGETS.crashAfterExpiryMedianMs} ms, max ≤ ${TARGETS.crashAfterExpiryMaxMs} ms`,
          yes(t('crash')),
        ),
      );
    }
    if (c.graceful) {
      lines.push(
        seriesRow(
          "Graceful handover: SIGTERM of the ACTIVE → the other's 200",
          c,
          c.graceful.handover,
          `median < ${TARGETS.gracefulMedianMs} ms`,
          yes(t('graceful')),
        ),
      );
    }
    if (c.redisRestart) {
      lines.push(
        seriesRow(
          'Redis restart: redis-server started → exactly one 200',
          c,
          c.redisRestart.recovery,
          `< ${recoveryMaxMs(c.timing.ttlMs)} ms`,
          yes(t('Redis')),
        ),
      );
      lines.push(seriesRow('… from Redis answering PING', c, c.redisRestart.fromRedisAnswering, '—', ''));
      lines.push(seriesRow('… (before it) Redis killed → both replicas STANDBY', c, c.redisRestart.bothStandbyAfterLoss, '—', ''));
    }
    if (c.switchover) {
      lines.push(
        seriesRow(
          'Switchover: old leader steps down → new leader ACTIVE (their role-change lines)',
          c,
          c.switchover.gap,
          `median < ${TARGETS.switchoverGapMedianMs} ms, no overlap`,
          yes(t('switchover')),
        ),
      );
      lines.push(seriesRow('… `grinder switchover --to ID` spawned → exited 0', c, c.switchover.command, '—', ''));
      lines.push(seriesRow("… the command's own figure: its first read → the new lease seen", c, c.switchover.reported, '—', ''));
    }
    if (c.init) {
      lines.push(
        seriesRow(
          'Fresh Redis, `grinder init`, replicas spawned → first leader ACTIVE',
          c,
          c.init.withInit.firstLeader,
          `< ${TARGETS.initFirstLeaderMaxMs} ms`,
          yes(t('init')),
        ),
      );
      lines.push(seriesRow('… `grinder init` spawned → exited 0', c, c.init.initCommand, '—', ''));
      lines.push(seriesRow('… without `grinder init` (the one-TTL barrier)', c, c.init.withoutInit.firstLeader, '—', ''));
    }
  }
  if (r.sentinel) {
    const sc = r.sentinel;
    const at = { ttlMs: sc.timing.ttlMs, renewMs: sc.timing.renewMs };
    lines.push(
      row([
        'Sentinel: master SIGKILL → one ACTIVE with its lease on the promoted replica',
        `${at.ttlMs} / ${at.renewMs}`,
        String(sc.recovery.samplesMs.length),
        f(sc.recovery.summary?.median),
        f(sc.recovery.summary?.max),
        '—',
        '',
      ]),
    );
    lines.push(
      row([
        '… master SIGKILL → the Sentinels name the promoted replica (down-after 1 s)',
        `${at.ttlMs} / ${at.renewMs}`,
        String(sc.promotion.samplesMs.length),
        f(sc.promotion.summary?.median),
        f(sc.promotion.summary?.max),
        '—',
        '',
      ]),
    );
  }
  if (r.load) {
    const l = r.load;
    lines.push('');
    lines.push(
      `Load on the ACTIVE replica (${r.configs[r.configs.length - 1]?.timing.label ?? ''} TTL), ${l.connections} keep-alive connections from a separate process, ${r.options.loadSeconds} s after 1 s of warm-up:`,
    );
    lines.push('');
    lines.push(row(['Endpoint', 'Body (bytes)', 'Requests/s', 'p50 (ms)', 'p99 (ms)', 'Max (ms)', 'Non-200 / errors', 'Replica CPU', 'Load generator CPU']));
    lines.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    const loadRow = (run: LoadRun): string => {
      const non200 = Object.entries(run.statuses)
        .filter(([s]) => s !== '200')
        .reduce((a, [, n]) => a + n, 0);
      return row([
        `GET ${run.path}`,
        String(run.responseBytes),
        f(run.requestsPerSecond, 0),
        f(run.latencyMs?.median, 2),
        f(run.latencyMs?.p99, 2),
        f(run.latencyMs?.max, 2),
        `${non200} / ${run.errors}`,
        `${f(run.replicaCpuPercent, 0)} %`,
        `${f(run.generatorCpuPercent, 0)} %`,
      ]);
    };
    lines.push(loadRow(l.readyz));
    lines.push(loadRow(l.metrics));
    lines.push('');
    lines.push(row(['Replica memory (VmRSS)', 'MiB']));
    lines.push(row(['---', '---:']));
    lines.push(row(['ACTIVE, idle', f(l.memoryMiB.activeIdle)]));
    lines.push(row(['STANDBY, idle', f(l.memoryMiB.standbyIdle)]));
    lines.push(row(['ACTIVE, after the load', f(l.memoryMiB.activeAfterLoad)]));
    lines.push(row(['ACTIVE, peak (VmHWM)', f(l.memoryMiB.activePeak)]));
  }
  if (r.cost) lines.push('', ...renderCost(r.cost, r.options.connections, r.options.loadSeconds));
  const notes: string[] = [];
  for (const c of r.configs) {
    if (c.firstActiveMs !== null)
      notes.push(`Fresh Redis → first ACTIVE (${c.timing.ttlMs}/${c.timing.renewMs}, the data-loss barrier): ${f(c.firstActiveMs)} ms.`);
    const unsafe = c.redisRestart?.doubleActivePolls ?? 0;
    if (unsafe > 0) notes.push(`**${unsafe} polls saw two replicas answer 200 at once after a Redis restart (${c.timing.ttlMs}/${c.timing.renewMs}).**`);
    const overlaps = c.switchover?.overlaps ?? 0;
    if (overlaps > 0) notes.push(`**${overlaps} overlapping leaderships in the switchover run (${c.timing.ttlMs}/${c.timing.renewMs}).**`);
  }
  if (notes.length > 0) lines.push('', ...notes);
  if (r.failures.length > 0) {
    lines.push('');
    lines.push('Failed trials:');
    for (const x of r.failures) lines.push(`- ${x}`);
  }
  return lines.join('\n');
}

/** Whether the cost figures meet COST_TARGETS. */
export function costMet(c: CostResult): { rss: boolean; readyz: boolean } {
  return { rss: c.rssRatio <= COST_TARGETS.rssRatioMax, readyz: c.readyzRatio >= COST_TARGETS.readyzRatioMin };
}

function renderCost(c: CostResult, connections: number, loadSeconds: number): string[] {
  const met = costMet(c);
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
  return [
    `GRINDER beside a minimal node:http + ioredis elector (tools/bench/baseline-elector.mjs), both fresh on one Redis, each ACTIVE on its own key; /readyz with ${connections} connections for ${loadSeconds} s, ${c.rounds} round(s) each, taking turns (median):`,
    '',
    row(['Cost', 'GRINDER', 'Minimal elector', 'Ratio', 'Target', 'Met']),
    row(['---', '---:', '---:', '---:', '---', '---']),
    row(['Idle RSS (MiB)', f(c.rssMiB.grinder), f(c.rssMiB.baseline), f(c.rssRatio, 2), `≤ ${COST_TARGETS.rssRatioMax}×`, met.rss ? '**yes**' : '**NO**']),
    row([
      'GET /readyz (requests/s)',
      f(med(c.readyzRps.grinder), 0),
      f(med(c.readyzRps.baseline), 0),
      f(c.readyzRatio, 2),
      `≥ ${COST_TARGETS.readyzRatioMin}×`,
      met.readyz ? '**yes**' : '**NO**',
    ]),
  ];
}
