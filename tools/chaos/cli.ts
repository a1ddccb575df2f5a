import { randomInt } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';
import { FAULT_KINDS, SENTINEL_FAULTS, STANDALONE_FAULTS, exitCodeFor, formatReport, type FaultKind } from './checker';
import { MAIN_JS } from '../kit/replica';
import { chaosChildren, runChaos, type ChaosOptions } from './harness';

/*
 * npm run chaos -- --duration 60 --replicas 3 --seed 42 [--ttl 1000] [--renew 250] [--json report.json]
 *
 * Exit codes: 0 safe (and the harness worked), 1 safety violated, 2 the harness failed or a
 * replica crashed by itself, 64 bad arguments, 130 interrupted twice (forced stop, no report).
 * Progress goes to stderr, the report to stdout.
 */

const USAGE = `usage: npm run chaos -- [options]

  --duration S        seconds of fault injection (default 60)
  --replicas N        replicas, each behind its own proxy (default 3, at least 2)
  --seed N            seed for the fault plan (default: random, printed)
  --ttl MS            GRINDER_HA_LOCK_TTL_MS (default 1000)
  --renew MS          GRINDER_HA_RENEW_INTERVAL_MS (default 250)
  --live-interval MS  GRINDER_LIVE_INTERVAL_MS, the live loop's write interval (default 50)
  --settle MIN-MAX    ms to let the system settle between faults (default 1000-3000)
  --faults LIST       comma-separated kinds to inject (default: every kind the mode can inject;
                      standalone ${STANDALONE_FAULTS.join(',')}; Sentinel ${SENTINEL_FAULTS.join(',')})
  --sentinel          run on Redis Sentinel (a master, a replica, three Sentinels) and kill masters
  --mixed-ttl         chaos-1 runs with 3 x the TTL and renew interval (replicas configured
                      differently: every barrier must cover the longest lease)
  --json FILE         also write the report (and the fault timeline) as JSON
  --logs DIR          keep every replica's log lines and the raw records in DIR
  --main FILE         the replica entry point to run (default dist/main.js)
`;

class UsageError extends Error {}

function parseArgs(argv: readonly string[]): Omit<ChaosOptions, 'signal' | 'progress'> & { json: string | null } {
  const out = {
    durationS: 60,
    replicas: 3,
    seed: randomInt(1, 2 ** 31 - 1),
    ttlMs: 1_000,
    renewMs: 250,
    liveIntervalMs: 50,
    settleMinMs: 1_000,
    settleMaxMs: 3_000,
    faults: null as FaultKind[] | null,
    sentinel: false,
    mixedTtl: false,
    logsDir: null as string | null,
    mainJs: MAIN_JS,
    json: null as string | null,
  };
  const int = (flag: string, v: string | undefined, min: number, max: number): number => {
    if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`${flag} needs a whole number`);
    const n = Number(v);
    if (n < min || n > max) throw new UsageError(`${flag} must be from ${min} to ${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] as string;
    const [flag, inline] = raw.includes('=') ? (raw.split(/=(.*)/s, 2) as [string, string]) : [raw, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--duration':
        out.durationS = int(flag, value(), 1, 86_400);
        break;
      case '--replicas':
        out.replicas = int(flag, value(), 2, 16);
        break;
      case '--seed':
        out.seed = int(flag, value(), 0, 2 ** 32 - 1);
        break;
      case '--ttl':
        out.ttlMs = int(flag, value(), 1_000, 600_000);
        break;
      case '--renew':
        out.renewMs = int(flag, value(), 10, 600_000);
        break;
      case '--live-interval':
        out.liveIntervalMs = int(flag, value(), 10, 60_000);
        break;
      case '--settle': {
        const m = /^(\d+)-(\d+)$/.exec(value() ?? '');
        if (!m || Number(m[1]) > Number(m[2])) throw new UsageError('--settle needs MIN-MAX in ms, e.g. 1000-3000');
        out.settleMinMs = Number(m[1]);
        out.settleMaxMs = Number(m[2]);
        break;
      }
      case '--faults': {
        const list = (value() ?? '').split(',').filter((k) => k !== '');
        const bad = list.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
        if (list.length === 0 || bad.length > 0)
          throw new UsageError(`--faults takes kinds from ${FAULT_KINDS.join(',')}${bad.length ? `; unknown: ${bad.join(',')}` : ''}`);
        out.faults = list as FaultKind[];
        break;
      }
      case '--mixed-ttl':
        out.mixedTtl = true;
        break;
      case '--sentinel':
        out.sentinel = true;
        break;
      case '--json':
        out.json = value() ?? null;
        if (!out.json) throw new UsageError('--json needs a file name');
        break;
      case '--logs':
        out.logsDir = value() ?? null;
        if (!out.logsDir) throw new UsageError('--logs needs a directory');
        break;
      case '--main':
        out.mainJs = resolve(value() ?? '');
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        throw new UsageError(`unknown argument ${raw}`);
    }
  }
  // The replicas would refuse these settings at start-up: say so now, in the service's own words.
  try {
    loadConfig({
      GRINDER_HA_ENABLED: 'true',
      GRINDER_HA_LOCK_TTL_MS: String(out.ttlMs),
      GRINDER_HA_RENEW_INTERVAL_MS: String(out.renewMs),
      GRINDER_LIVE_INTERVAL_MS: String(out.liveIntervalMs),
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`the replicas would not start with these settings: ${err.message}`);
    throw err;
  }
  const possible = out.sentinel ? SENTINEL_FAULTS : STANDALONE_FAULTS;
  const faults = out.faults ?? [...possible];
  const impossible = faults.filter((k) => !possible.includes(k));
  if (impossible.length > 0) {
    throw new UsageError(
      `${impossible.join(',')} cannot be injected ${out.sentinel ? 'on Sentinel' : 'on one Redis (master-kill needs --sentinel)'}; this mode takes ${possible.join(',')}`,
    );
  }
  return { ...out, faults };
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`chaos: ${err.message}\n\n${USAGE}`);
      return 64;
    }
    throw err;
  }
  if (!existsSync(args.mainJs)) {
    process.stderr.write(`chaos: ${args.mainJs} is missing; run npm run build first (npm run chaos does)\n`);
    return 2;
  }

  // Whatever happens, no process of ours outlives us.
  process.on('exit', () => {
    chaosChildren.killAllNow();
  });
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts += 1;
    if (interrupts === 1) {
      process.stderr.write(`\nchaos: ${sig}: ending the fault phase, stopping everything, then reporting (again to force)\n`);
      controller.abort();
    } else {
      chaosChildren.killAllNow();
      process.stderr.write(`chaos: ${sig} again: killed every child process; no report\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { json, ...opts } = args;
  process.stderr.write(`chaos: seed ${opts.seed} (replay with --seed ${opts.seed})\n`);
  const { records, report } = await runChaos({
    ...opts,
    signal: controller.signal,
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  if (controller.signal.aborted) report.harnessErrors.push('interrupted before the planned duration');
  if (report.harnessErrors.length > 0 && report.safe) report.verdict = 'FAIL: harness error';

  process.stdout.write(`${formatReport(report, records.startMonoMs)}\n`);
  if (json) {
    const { intervals, ...summary } = report;
    writeFileSync(
      json,
      JSON.stringify({ ...summary, durationS: opts.durationS, startMonoMs: records.startMonoMs, intervals, exitCode: exitCodeFor(report) }, null, 2),
    );
    process.stderr.write(`chaos: report written to ${json}\n`);
  }
  return exitCodeFor(report);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    chaosChildren.killAllNow();
    process.exit(2);
  },
);
