import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { httpGet, pollUntilReady } from '../kit/http';
import { REPO_ROOT, type Replica } from '../kit/replica';
import { sleep } from '../kit/time';
import type { Pair } from './cluster';
import type { Resources } from './cleanup';
import type { LoadResult } from './loadgen';
import { cpuMs, memoryMiB } from './proc';
import { summarize, type Summary } from './stats';
import { errMessage } from '../../src/error-text';

/** Samples of one measured quantity, in ms, with their summary (null while there are none). */
export interface Series {
  samplesMs: number[];
  summary: Summary | null;
}

export function series(samples: number[]): Series {
  return { samplesMs: samples, summary: samples.length > 0 ? summarize(samples) : null };
}

export interface CrashResult {
  /** SIGKILL of the ACTIVE replica to the other's first 200 on /readyz. */
  failover: Series;
  /** Lease time Redis still had on the lock key at the kill. */
  leaseLeftAtKill: Series;
  /** Failover time minus the lease left: how late after the dead leader's expiry the other took over. */
  afterExpiry: Series;
  failures: string[];
}

export interface GracefulResult {
  /** SIGTERM of the ACTIVE replica to the other's first 200 on /readyz. */
  handover: Series;
  /** SIGTERM to the process' exit. */
  exit: Series;
  exitCodes: (number | null)[];
  failures: string[];
}

export interface RecoveryResult {
  /** redis-server started again to exactly one replica answering 200 on /readyz. */
  recovery: Series;
  /** Redis answering PING again to exactly one replica answering 200. */
  fromRedisAnswering: Series;
  /** redis-server killed to both replicas answering STANDBY (the ACTIVE one waits out its lease). */
  bothStandbyAfterLoss: Series;
  /** Polls that saw two replicas answer 200 at once (must be 0). */
  doubleActivePolls: number;
  failures: string[];
}

export type Progress = (line: string) => void;

const ms = (v: number): string => `${v.toFixed(1)} ms`;

/** A random wait up to one renew interval, so kills land at every phase of the renew cycle. */
const randomPhase = (pair: Pair): Promise<void> => sleep(Math.random() * pair.timing.renewMs);

function settleTimeout(pair: Pair): number {
  return pair.timing.ttlMs * 3 + 10_000;
}

async function recover(pair: Pair, failures: string[], trial: number, err: unknown): Promise<void> {
  failures.push(`trial ${trial}: ${errMessage(err)}`);
  if (!pair.redis.running) await pair.redis.startProcess();
  await pair.restartDead();
}

export async function crashFailover(pair: Pair, trials: number, log: Progress): Promise<CrashResult> {
  const failover: number[] = [];
  const left: number[] = [];
  const after: number[] = [];
  const failures: string[] = [];
  for (let t = 1; t <= trials; t++) {
    try {
      const a = await pair.settled(settleTimeout(pair));
      const victim = pair.replica(a);
      const survivor = pair.replica(1 - a);
      // The survivor may have been restarted by the previous trial: let it watch one renewal
      // first. A standby takes a version over one TTL after it FIRST SAW it (it cannot trust when
      // Redis says it was written), so one that started after the last renewal is later by its own
      // start-up time; that case is safe by design and is not what this row measures.
      await sleep(pair.timing.renewMs + 100);
      await randomPhase(pair);
      const before = await pair.lease();
      const killedAt = performance.now();
      victim.signal('SIGKILL');
      const ready = pollUntilReady(survivor.port, settleTimeout(pair), { agent: survivor.agent });
      await victim.exited;
      // Read again once the victim is gone: a renewal it sent just before dying may have moved the
      // expiry. If the survivor has already taken the key, the reading from before the kill stands.
      const afterKill = await pair.lease().catch(() => null);
      const reading = afterKill?.holder === victim.name ? afterKill : before.holder === victim.name ? before : null;
      const readyAt = await ready;
      failover.push(readyAt - killedAt);
      let line = `  crash ${t}/${trials}: failover ${ms(readyAt - killedAt)}`;
      if (reading?.expiresAt != null) {
        left.push(reading.expiresAt - killedAt);
        after.push(readyAt - reading.expiresAt);
        line += ` (lease left ${ms(reading.expiresAt - killedAt)}, ACTIVE ${ms(readyAt - reading.expiresAt)} after expiry)`;
      } else {
        failures.push(`trial ${t}: could not read the victim's lease expiry`);
      }
      log(line);
      await pair.startReplica(a);
    } catch (err) {
      await recover(pair, failures, t, err);
    }
  }
  await pair.settled(settleTimeout(pair));
  return { failover: series(failover), leaseLeftAtKill: series(left), afterExpiry: series(after), failures };
}

export async function gracefulHandover(pair: Pair, trials: number, log: Progress): Promise<GracefulResult> {
  const handover: number[] = [];
  const exit: number[] = [];
  const exitCodes: (number | null)[] = [];
  const failures: string[] = [];
  for (let t = 1; t <= trials; t++) {
    try {
      const a = await pair.settled(settleTimeout(pair));
      const leaving = pair.replica(a);
      const next = pair.replica(1 - a);
      await randomPhase(pair);
      const termAt = performance.now();
      leaving.signal('SIGTERM');
      // A signal instead of an exit code is recorded as -1, as the bench always has.
      const exited = leaving.exited.then((code) => ({ code: code ?? (leaving.exitSignal ? -1 : null), at: performance.now() }));
      const readyAt = await pollUntilReady(next.port, settleTimeout(pair), { agent: next.agent });
      const { code, at } = await exited;
      handover.push(readyAt - termAt);
      exit.push(at - termAt);
      exitCodes.push(code);
      if (code !== 0) failures.push(`trial ${t}: SIGTERM exited with ${String(code)}`);
      log(`  graceful ${t}/${trials}: handover ${ms(readyAt - termAt)} (old ACTIVE exited ${code} after ${ms(at - termAt)})`);
      await pair.startReplica(a);
    } catch (err) {
      await recover(pair, failures, t, err);
    }
  }
  await pair.settled(settleTimeout(pair));
  return { handover: series(handover), exit: series(exit), exitCodes, failures };
}

export async function redisRecovery(pair: Pair, trials: number, log: Progress): Promise<RecoveryResult> {
  const recovery: number[] = [];
  const fromAnswering: number[] = [];
  const standby: number[] = [];
  const failures: string[] = [];
  let doubleActivePolls = 0;
  const limit = settleTimeout(pair);
  for (let t = 1; t <= trials; t++) {
    try {
      await pair.settled(limit);
      await randomPhase(pair);
      const downAt = performance.now();
      await pair.redis.stop('SIGKILL');
      for (;;) {
        const roles = await pair.roles();
        if (roles.every((r) => r === 'standby')) break;
        if (performance.now() - downAt > limit) throw new Error(`replicas not both STANDBY ${limit} ms after Redis went away (roles: ${roles.join(', ')})`);
        await sleep(5);
      }
      const standbyAt = performance.now();
      standby.push(standbyAt - downAt);

      const startAt = performance.now();
      const starting = pair.redis.startProcess();
      starting.catch(() => undefined); // awaited below; this only keeps an early exit from leaving it unhandled
      let answeringAt: number | null = null;
      const pinging = (async () => {
        while (answeringAt === null && performance.now() - startAt < limit) {
          if (await pair.redisAnswers()) answeringAt = performance.now();
          else await sleep(2);
        }
      })();
      let oneAt: number | null = null;
      while (oneAt === null) {
        const roles = await pair.roles();
        const actives = roles.filter((r) => r === 'active').length;
        if (actives > 1) doubleActivePolls++;
        if (actives === 1) oneAt = performance.now();
        else if (performance.now() - startAt > limit) throw new Error(`no replica ACTIVE ${limit} ms after Redis came back (roles: ${roles.join(', ')})`);
        else await sleep(2);
      }
      await starting;
      await pinging;
      recovery.push(oneAt - startAt);
      let line = `  redis restart ${t}/${trials}: both STANDBY ${ms(standbyAt - downAt)} after the kill; one ACTIVE ${ms(oneAt - startAt)} after redis-server started`;
      if (answeringAt !== null) {
        fromAnswering.push(oneAt - answeringAt);
        line += ` (${ms(oneAt - answeringAt)} after it answered PING)`;
      }
      log(line);
    } catch (err) {
      await recover(pair, failures, t, err);
    }
  }
  await pair.settled(limit);
  return {
    recovery: series(recovery),
    fromRedisAnswering: series(fromAnswering),
    bothStandbyAfterLoss: series(standby),
    doubleActivePolls,
    failures,
  };
}

export interface LoadRun extends LoadResult {
  /** CPU the replica used in the measured window, as % of one core. */
  replicaCpuPercent: number;
  /** CPU the load generator used in the same window, as % of one core. */
  generatorCpuPercent: number;
  /** Body size of one answer, fetched just before the load. */
  responseBytes: number;
}

const LOADGEN = join(__dirname, 'loadgen.ts');

/** Runs the load generator in a child process against one replica and samples the replica's CPU. */
export async function runLoad(res: Resources, replica: Replica, path: string, connections: number, durationMs: number): Promise<LoadRun> {
  const pid = replica.pid;
  const port = replica.port;
  const sample = await httpGet(port, path, { agent: replica.agent });
  if (sample.status !== 200) throw new Error(`GET ${path} answered ${sample.status} before the load: ${sample.body.slice(0, 200)}`);
  const responseBytes = Buffer.byteLength(sample.body);
  return new Promise((resolve, reject) => {
    const args = [
      '--import',
      'tsx',
      LOADGEN,
      '--port',
      String(port),
      '--path',
      path,
      '--connections',
      String(connections),
      '--duration-ms',
      String(durationMs),
      '--warmup-ms',
      '1000',
    ];
    const child = res.child(spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    let cpuStart: number | null = null;
    let cpuEnd: number | null = null;
    let windowStart = 0;
    let windowEnd = 0;
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (cpuStart === null && out.includes('window-start\n')) {
        cpuStart = cpuMs(pid);
        windowStart = performance.now();
      }
      if (cpuEnd === null && out.includes('window-end\n')) {
        cpuEnd = cpuMs(pid);
        windowEnd = performance.now();
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{')) ?? '';
      if (code !== 0 || line === '') {
        reject(new Error(`load generator exited with ${String(code)}: ${err.trim() || out.trim()}`));
        return;
      }
      const r = JSON.parse(line) as LoadResult;
      const windowMs = windowEnd - windowStart;
      resolve({
        ...r,
        replicaCpuPercent: cpuStart !== null && cpuEnd !== null && windowMs > 0 ? ((cpuEnd - cpuStart) / windowMs) * 100 : NaN,
        generatorCpuPercent: (r.generatorCpuMs / r.durationMs) * 100,
        responseBytes,
      });
    });
  });
}

export interface LoadAndMemory {
  replica: string;
  connections: number;
  readyz: LoadRun;
  metrics: LoadRun;
  memoryMiB: {
    activeIdle: number;
    standbyIdle: number;
    activeAfterLoad: number;
    activePeak: number;
  };
}

export async function loadAndMemory(pair: Pair, res: Resources, connections: number, durationMs: number, log: Progress): Promise<LoadAndMemory> {
  const a = await pair.settled(settleTimeout(pair));
  const active = pair.replica(a);
  const standby = pair.replica(1 - a);
  await sleep(2_000);
  const idle = memoryMiB(active.pid);
  const standbyIdle = memoryMiB(standby.pid);
  log(`  RSS idle: ACTIVE ${idle.rss.toFixed(1)} MiB, STANDBY ${standbyIdle.rss.toFixed(1)} MiB`);
  const readyz = await runLoad(res, active, '/readyz', connections, durationMs);
  log(
    `  /readyz: ${readyz.requestsPerSecond.toFixed(0)} req/s, p99 ${readyz.latencyMs?.p99.toFixed(2) ?? '-'} ms, replica CPU ${readyz.replicaCpuPercent.toFixed(0)} %`,
  );
  const metrics = await runLoad(res, active, '/metrics', connections, durationMs);
  log(
    `  /metrics: ${metrics.requestsPerSecond.toFixed(0)} req/s, p99 ${metrics.latencyMs?.p99.toFixed(2) ?? '-'} ms, replica CPU ${metrics.replicaCpuPercent.toFixed(0)} %`,
  );
  const afterLoad = memoryMiB(active.pid);
  log(`  RSS after load: ${afterLoad.rss.toFixed(1)} MiB (peak ${afterLoad.peak.toFixed(1)} MiB)`);
  return {
    replica: active.name,
    connections,
    readyz,
    metrics,
    memoryMiB: { activeIdle: idle.rss, standbyIdle: standbyIdle.rss, activeAfterLoad: afterLoad.rss, activePeak: afterLoad.peak },
  };
}
