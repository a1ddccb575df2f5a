/**
 * The load generator, run as a child process of the bench (never inside the process being
 * measured): N keep-alive connections (raw-http.ts), each sending the next GET as soon as the previous answer
 * has arrived (closed loop), for a fixed time after a short warm-up. Prints one JSON line
 * (LoadResult) on stdout, after the lines `window-start` and `window-end` that mark the measured
 * window as it happens.
 *
 *   node --import tsx tools/bench/loadgen.ts --port 9090 --path /readyz --connections 50 --duration-ms 5000
 */
import { performance } from 'node:perf_hooks';
import { RawHttpConnection } from './raw-http';
import { summarize, type Summary } from './stats';
import { errMessage } from '../../src/error-text';

export interface LoadResult {
  path: string;
  connections: number;
  /** Measured window, warm-up excluded. */
  durationMs: number;
  requests: number;
  errors: number;
  /** Answers by HTTP status, e.g. {"200": 51234}. */
  statuses: Record<string, number>;
  requestsPerSecond: number;
  /** Request start to last body byte, over the measured window. */
  latencyMs: Summary | null;
  /** CPU time the load generator itself used in the measured window (user + system). */
  generatorCpuMs: number;
}

interface Args {
  port: number;
  path: string;
  connections: number;
  durationMs: number;
  warmupMs: number;
}

function parseArgs(argv: readonly string[]): Args {
  const out: Args = { port: 0, path: '/readyz', connections: 50, durationMs: 5_000, warmupMs: 500 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${name} needs a value`);
    switch (name) {
      case '--port':
        out.port = Number(value);
        break;
      case '--path':
        out.path = value;
        break;
      case '--connections':
        out.connections = Number(value);
        break;
      case '--duration-ms':
        out.durationMs = Number(value);
        break;
      case '--warmup-ms':
        out.warmupMs = Number(value);
        break;
      default:
        throw new Error(`unknown argument ${name}`);
    }
  }
  if (!Number.isInteger(out.port) || out.port <= 0) throw new Error('--port is required');
  if (!(out.connections >= 1 && out.durationMs > 0 && out.warmupMs >= 0)) throw new Error('bad --connections/--duration-ms/--warmup-ms');
  return out;
}

async function run(args: Args): Promise<LoadResult> {
  const start = performance.now();
  const measureFrom = start + args.warmupMs;
  const end = measureFrom + args.durationMs;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let cpuAtStart: NodeJS.CpuUsage | null = null;

  // Markers for the bench, which samples the replica's CPU time at the window's edges.
  let ended = false;
  const endWindow = (): void => {
    if (ended) return;
    ended = true;
    process.stdout.write('window-end\n');
  };
  const startTimer = setTimeout(() => process.stdout.write('window-start\n'), args.warmupMs);
  const endTimer = setTimeout(endWindow, args.warmupMs + args.durationMs);

  const conns: RawHttpConnection[] = [];
  // A replica that stops answering must not hang the bench: cut every connection 5 s after the end.
  const watchdog = setTimeout(() => conns.forEach((c) => c.close()), args.warmupMs + args.durationMs + 5_000);

  const worker = async (): Promise<void> => {
    const conn = new RawHttpConnection('127.0.0.1', args.port, args.path);
    conns.push(conn);
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) {
        conn.close();
        return;
      }
      if (cpuAtStart === null && t0 >= measureFrom) cpuAtStart = process.cpuUsage();
      let status: number;
      try {
        status = await conn.get();
      } catch {
        status = -1;
      }
      const t1 = performance.now();
      // Only requests that started and finished inside the window count.
      if (t0 < measureFrom || t1 > end) continue;
      if (status < 0) {
        errors++;
        continue;
      }
      latencies.push(t1 - t0);
      statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: args.connections }, () => worker()));
  clearTimeout(watchdog);
  clearTimeout(startTimer);
  clearTimeout(endTimer);
  endWindow();
  const cpu = process.cpuUsage(cpuAtStart ?? undefined);
  return {
    path: args.path,
    connections: args.connections,
    durationMs: args.durationMs,
    requests: latencies.length,
    errors,
    statuses,
    requestsPerSecond: latencies.length / (args.durationMs / 1_000),
    latencyMs: latencies.length > 0 ? summarize(latencies) : null,
    generatorCpuMs: (cpu.user + cpu.system) / 1_000,
  };
}

if (require.main === module) {
  run(parseArgs(process.argv.slice(2))).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`loadgen: ${errMessage(err)}\n`);
      process.exit(1);
    },
  );
}
