// GRINDER HA on a laptop, without Docker: the runbook's topology as local processes.
//
//   npm run ha:local            (builds, then runs this script with `node --import tsx`)
//
// Starts a redis-server of its own (temp dir, appendonly, a free port: never the machine's Redis
// on 6379) and the two replicas, grinder_live_1 on :9090 and grinder_live_2 on :9091, exactly as
// docker-compose.ha.yml configures them. Prints who is ACTIVE whenever that changes. Ctrl-C (or
// SIGTERM) stops the replicas gracefully (the ACTIVE one releases its lease), then Redis, and
// removes the temp dir.
//
// While it runs, type a command and Enter to follow the runbook's failure drills:
//   stop 1|2     graceful stop of a replica (SIGTERM, like `docker stop grinder_live_1`)
//   kill 1|2     crash a replica (SIGKILL)
//   start 1|2    start a stopped replica again (like `docker start grinder_live_1`)
//   stop redis   stop Redis (like `docker stop grinder-redis`)
//   start redis  start Redis again, same data (like `docker start grinder-redis`)
//   status       print both replicas' /readyz now
//
// Environment (all optional):
//   GRINDER_LOCAL_PORTS=9090,9091   host ports of grinder_live_1 and grinder_live_2
//   GRINDER_LOCAL_REDIS_PORT=N      Redis port (default: a free one; never use 6379's server)
//   GRINDER_HA_LOCK_TTL_MS, GRINDER_HA_RENEW_INTERVAL_MS, GRINDER_LOG_LEVEL, OTEL_*  passed on
//   (defaults: the runbook's 10000 / 3000). With docker-compose.obs.yml running, set
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 to see the lease spans in Tempo.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ChildProcesses } from '../tools/kit/children';
import { runCommand } from '../tools/kit/command';
import { readyRole } from '../tools/kit/http';
import { freePort, portInUse } from '../tools/kit/ports';
import { RedisServer } from '../tools/kit/redis';
import { MAIN_JS, Replica } from '../tools/kit/replica';
import { sleep } from '../tools/kit/time';
import { errMessage } from '../src/error-text';
import { DEFAULTS } from '../src/config';

const IDS = ['grinder_live_1', 'grinder_live_2'];
const PORTS = (process.env.GRINDER_LOCAL_PORTS ?? '9090,9091').split(',').map((p) => Number(p.trim()));
const POLL_MS = 250;
const STOP_GRACE_MS = 8_000;

interface LocalReplica {
  id: string;
  n: number;
  port: number;
  log: string;
  replica: Replica | null;
  /** Set by the stop/kill commands, so that their exit is not reported as unexpected. */
  expectedExit: boolean;
}

function fail(msg: string): never {
  process.stderr.write(`ha-local: ${msg}\n`);
  process.exit(1);
}

if (PORTS.length !== 2 || PORTS.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
  fail(`GRINDER_LOCAL_PORTS must be two ports, e.g. 9090,9091 (got ${process.env.GRINDER_LOCAL_PORTS})`);
}
if (!existsSync(MAIN_JS)) fail(`${MAIN_JS} does not exist: run \`npm run build\` (or \`npm run ha:local\`, which builds)`);

const dir = mkdtempSync(join(tmpdir(), 'grinder-ha-local-'));
const replicas: LocalReplica[] = IDS.map((id, i) => ({
  id,
  n: i + 1,
  port: PORTS[i] as number,
  log: join(dir, `${id}.log`),
  replica: null,
  expectedExit: false,
}));
/** Whatever ends this script, no child outlives it. */
const children = new ChildProcesses();
let redis: RedisServer | null = null;
let redisExpectedExit = false;
let stopping = false;
let lastLine = '';

function stamp(): string {
  return new Date().toTimeString().slice(0, 8);
}

function say(msg: string): void {
  process.stdout.write(`[${stamp()}] ${msg}\n`);
}

/** Starts Redis, or starts it again on the same port and data. Children get their own process group: Ctrl-C reaches only this script, which stops them in order. */
async function startRedis(port: number): Promise<void> {
  redisExpectedExit = false;
  if (redis) {
    await redis.startProcess();
    return;
  }
  redis = await RedisServer.start({
    port,
    dir,
    persistent: true,
    ownProcessGroup: true,
    onStderr: (text) => process.stderr.write(`redis: ${text}`),
    onSpawn: (proc) => children.add(proc),
    onExit: (code, signal) => {
      if (!stopping && !redisExpectedExit) say(`Redis exited unexpectedly (${signal ?? `code ${code}`})`);
    },
  });
}

function replicaEnv(r: LocalReplica, redisPort: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return {
    ...env,
    GRINDER_HA_ENABLED: 'true',
    GRINDER_REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
    GRINDER_HA_LOCK_TTL_MS: env.GRINDER_HA_LOCK_TTL_MS ?? String(DEFAULTS.lockTtlMs),
    GRINDER_HA_RENEW_INTERVAL_MS: env.GRINDER_HA_RENEW_INTERVAL_MS ?? String(DEFAULTS.renewIntervalMs),
    GRINDER_HA_LOCK_KEY: env.GRINDER_HA_LOCK_KEY ?? DEFAULTS.lockKey,
    GRINDER_INSTANCE_ID: r.id,
    GRINDER_METRICS_PORT: String(r.port),
    GRINDER_HTTP_HOST: '127.0.0.1',
    GRINDER_ADVERTISE_URL: `http://localhost:${r.port}`,
    GRINDER_LOG_LEVEL: env.GRINDER_LOG_LEVEL ?? 'info',
  };
}

/** `grinder init`, as docker-compose.ha.yml's one-shot grinder_init: this Redis is brand-new. */
async function declareCluster(redisPort: number): Promise<void> {
  const run = await runCommand(process.execPath, [MAIN_JS, 'init'], {
    env: replicaEnv(replicas[0] as LocalReplica, redisPort),
    failure: 'resolve',
    onSpawn: (proc) => children.add(proc),
  });
  const out = `${run.stdout}${run.stderr}`.trim();
  // Not fatal: without it the first leader merely comes one TTL later.
  say(run.code === 0 ? `grinder init: ${out}` : `grinder init failed (${run.code}): ${out}; the first leader comes after one TTL`);
}

async function startReplica(r: LocalReplica, redisPort: number): Promise<void> {
  if (r.replica) {
    say(`${r.id} is already running`);
    return;
  }
  if (await portInUse(r.port)) {
    throw new Error(`port ${r.port} for ${r.id} is in use (another ha:local, or docker-compose.ha.yml running?)`);
  }
  const replica = Replica.spawn({
    name: r.id,
    port: r.port,
    env: replicaEnv(r, redisPort),
    logFile: r.log,
    retainOutput: false,
    ownProcessGroup: true,
    onSpawn: (proc) => children.add(proc),
  });
  r.replica = replica;
  r.expectedExit = false;
  void replica.exited.then((code) => {
    if (r.replica === replica) r.replica = null;
    if (!stopping && !r.expectedExit) say(`${r.id} exited unexpectedly (${replica.exitSignal ?? `code ${code}`}); see ${r.log}`);
  });
  try {
    await replica.waitHealthy(15_000, 100);
  } catch (err) {
    if (!replica.alive) throw new Error(`${r.id} exited during start-up; see ${r.log}`, { cause: err });
    throw err;
  }
}

async function report(force: boolean): Promise<void> {
  const roles = await Promise.all(replicas.map((r) => readyRole(r.port, { timeoutMs: 1_000 })));
  const active = replicas.filter((_, i) => roles[i] === 'active');
  const others = replicas.map((r, i) => `${r.id}=${roles[i]}`).join('  ');
  let line: string;
  if (active.length === 1) line = `ACTIVE: ${active[0]?.id} (http://localhost:${active[0]?.port})   [${others}]`;
  else if (active.length === 0) line = `no ACTIVE replica   [${others}]`;
  else line = `SPLIT BRAIN: ${active.map((r) => r.id).join(' and ')} both ACTIVE   [${others}]`;
  if (force || line !== lastLine) say(line);
  lastLine = line;
}

async function command(text: string, redisPort: number): Promise<void> {
  const [verb, what] = text.trim().toLowerCase().split(/\s+/);
  if (!verb) return;
  try {
    if (verb === 'status') return await report(true);
    if (what === 'redis' && verb === 'stop') {
      redisExpectedExit = true;
      await redis?.stop('SIGTERM', STOP_GRACE_MS);
      return say('Redis stopped');
    }
    if (what === 'redis' && verb === 'start') {
      if (redis?.running) return say('Redis is already running');
      await startRedis(redisPort);
      return say(`Redis started again on port ${redisPort} (same data)`);
    }
    const r = replicas.find((x) => String(x.n) === what || x.id === what);
    if (r && (verb === 'stop' || verb === 'kill')) {
      r.expectedExit = true;
      await r.replica?.stop(verb === 'stop' ? 'SIGTERM' : 'SIGKILL', STOP_GRACE_MS);
      return say(`${r.id} ${verb === 'stop' ? 'stopped (SIGTERM)' : 'killed (SIGKILL)'}`);
    }
    if (r && verb === 'start') {
      await startReplica(r, redisPort);
      return say(`${r.id} started`);
    }
    say('commands: stop 1|2, kill 1|2, start 1|2, stop redis, start redis, status');
  } catch (err) {
    say(`${text.trim()}: ${errMessage(err)}`);
  }
}

async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  say('stopping: replicas first (the ACTIVE one releases its lease), then Redis');
  await Promise.all(replicas.flatMap((r) => (r.replica ? [r.replica.stop('SIGTERM', STOP_GRACE_MS)] : [])));
  await redis?.stop('SIGTERM', STOP_GRACE_MS);
  rmSync(dir, { recursive: true, force: true });
  say('stopped');
  process.exit(code);
}

// Last resort if something above throws: never leave a child behind.
process.on('exit', () => {
  children.killAllNow();
});

let interrupts = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    interrupts++;
    if (interrupts > 1) {
      say('second interrupt: killing everything now');
      process.exit(130);
    }
    void shutdown(0);
  });
}

async function main(): Promise<void> {
  const redisPort = Number(process.env.GRINDER_LOCAL_REDIS_PORT ?? (await freePort()));
  if (redisPort === 6379) fail("refusing to use port 6379: that is the machine's own Redis");
  await startRedis(redisPort);
  say(`Redis: redis://127.0.0.1:${redisPort}/0 (appendonly, data in ${dir})`);
  await declareCluster(redisPort);
  for (const r of replicas) {
    await startReplica(r, redisPort);
    say(`${r.id}: http://localhost:${r.port}  (logs: ${r.log})`);
  }
  say(`try: curl -sS http://localhost:${replicas[0]?.port}/readyz; echo   (not curl -f: a STANDBY answers 503)`);
  say('Ctrl-C stops everything. Commands: stop 1|2, kill 1|2, start 1|2, stop redis, start redis, status');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => void command(line, redisPort));
  for (;;) {
    if (!stopping) await report(false);
    await sleep(POLL_MS);
  }
}

main().catch((err: unknown) => {
  say(`could not start: ${errMessage(err)}`);
  void shutdown(1);
});
