#!/usr/bin/env node
// GRINDER HA on a laptop, without Docker: the runbook's topology as local processes.
//
//   npm run ha:local            (builds, then runs this script)
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
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN_JS = join(ROOT, 'dist', 'main.js');
const IDS = ['grinder_live_1', 'grinder_live_2'];
const PORTS = (process.env.GRINDER_LOCAL_PORTS ?? '9090,9091').split(',').map((p) => Number(p.trim()));
const POLL_MS = 250;
const STOP_GRACE_MS = 8_000;

if (PORTS.length !== 2 || PORTS.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
  fail(`GRINDER_LOCAL_PORTS must be two ports, e.g. 9090,9091 (got ${process.env.GRINDER_LOCAL_PORTS})`);
}
if (!existsSync(MAIN_JS)) fail(`${MAIN_JS} does not exist: run \`npm run build\` (or \`npm run ha:local\`, which builds)`);

const dir = mkdtempSync(join(tmpdir(), 'grinder-ha-local-'));
const redis = { port: 0, proc: null };
const replicas = IDS.map((id, i) => ({ id, n: i + 1, port: PORTS[i], proc: null, log: join(dir, `${id}.log`), expectedExit: false }));
let stopping = false;
let lastLine = '';

function fail(msg) {
  process.stderr.write(`ha-local: ${msg}\n`);
  process.exit(1);
}

function stamp() {
  return new Date().toTimeString().slice(0, 8);
}

function say(msg) {
  process.stdout.write(`[${stamp()}] ${msg}\n`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portInUse(port) {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

function redisPing(port) {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    sock.setTimeout(500, () => {
      sock.destroy();
      resolve(false);
    });
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        sock.end();
        resolve(buf.startsWith('+PONG'));
      }
    });
  });
}

async function until(what, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Children get their own process group: Ctrl-C reaches only this script, which stops them in order. */
function startRedis() {
  const proc = spawn(
    'redis-server',
    ['--port', String(redis.port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  proc.on('error', (err) => {
    if (err.code === 'ENOENT') say('redis-server is not on PATH (apt-get install redis-server)');
    else say(`redis-server: ${err.message}`);
    void shutdown(1);
  });
  proc.stderr.on('data', (d) => process.stderr.write(`redis: ${d}`));
  proc.once('exit', (code, signal) => {
    if (redis.proc === proc) redis.proc = null;
    if (!stopping && !proc.expectedExit) say(`Redis exited unexpectedly (${signal ?? `code ${code}`})`);
  });
  redis.proc = proc;
  return until(`Redis on port ${redis.port}`, () => redisPing(redis.port), 10_000);
}

function replicaEnv(r) {
  const env = { ...process.env };
  return {
    ...env,
    GRINDER_HA_ENABLED: 'true',
    GRINDER_REDIS_URL: `redis://127.0.0.1:${redis.port}/0`,
    GRINDER_HA_LOCK_TTL_MS: env.GRINDER_HA_LOCK_TTL_MS ?? '10000',
    GRINDER_HA_RENEW_INTERVAL_MS: env.GRINDER_HA_RENEW_INTERVAL_MS ?? '3000',
    GRINDER_HA_LOCK_KEY: env.GRINDER_HA_LOCK_KEY ?? 'grinder:leader:lock',
    GRINDER_INSTANCE_ID: r.id,
    GRINDER_METRICS_PORT: String(r.port),
    GRINDER_HTTP_HOST: '127.0.0.1',
    GRINDER_ADVERTISE_URL: `http://localhost:${r.port}`,
    GRINDER_LOG_LEVEL: env.GRINDER_LOG_LEVEL ?? 'info',
  };
}

/** `grinder init`, as docker-compose.ha.yml's one-shot grinder_init: this Redis is brand-new. */
function declareCluster() {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MAIN_JS, 'init'], { env: replicaEnv(replicas[0]), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    proc.once('exit', (code) => {
      // Not fatal: without it the first leader merely comes one TTL later.
      say(code === 0 ? `grinder init: ${out.trim()}` : `grinder init failed (${code}): ${out.trim()}; the first leader comes after one TTL`);
      resolve();
    });
  });
}

async function startReplica(r) {
  if (r.proc) {
    say(`${r.id} is already running`);
    return;
  }
  if (await portInUse(r.port)) {
    throw new Error(`port ${r.port} for ${r.id} is in use (another ha:local, or docker-compose.ha.yml running?)`);
  }
  const out = createWriteStream(r.log, { flags: 'a' });
  const proc = spawn(process.execPath, [MAIN_JS], { env: replicaEnv(r), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  proc.stdout.pipe(out);
  proc.stderr.pipe(out);
  r.proc = proc;
  r.expectedExit = false;
  proc.once('exit', (code, signal) => {
    if (r.proc === proc) r.proc = null;
    if (!stopping && !r.expectedExit) say(`${r.id} exited unexpectedly (${signal ?? `code ${code}`}); see ${r.log}`);
  });
  await until(
    `${r.id} to answer on :${r.port}`,
    async () => {
      if (r.proc !== proc) throw new Error(`${r.id} exited during start-up; see ${r.log}`);
      return (await readyz(r)) !== 'down';
    },
    15_000,
  );
}

async function stopProc(proc, signal) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

async function readyz(r) {
  try {
    const res = await fetch(`http://127.0.0.1:${r.port}/readyz`, { signal: AbortSignal.timeout(1_000) });
    const body = JSON.parse(await res.text());
    return typeof body.role === 'string' ? body.role : 'unknown';
  } catch {
    return 'down';
  }
}

async function report(force) {
  const roles = await Promise.all(replicas.map(readyz));
  const active = replicas.filter((_, i) => roles[i] === 'active');
  const others = replicas.map((r, i) => `${r.id}=${roles[i]}`).join('  ');
  let line;
  if (active.length === 1) line = `ACTIVE: ${active[0].id} (http://localhost:${active[0].port})   [${others}]`;
  else if (active.length === 0) line = `no ACTIVE replica   [${others}]`;
  else line = `SPLIT BRAIN: ${active.map((r) => r.id).join(' and ')} both ACTIVE   [${others}]`;
  if (force || line !== lastLine) say(line);
  lastLine = line;
}

async function command(text) {
  const [verb, what] = text.trim().toLowerCase().split(/\s+/);
  if (!verb) return;
  try {
    if (verb === 'status') return await report(true);
    if (what === 'redis' && verb === 'stop') {
      if (redis.proc) redis.proc.expectedExit = true;
      await stopProc(redis.proc, 'SIGTERM');
      return say('Redis stopped');
    }
    if (what === 'redis' && verb === 'start') {
      if (redis.proc) return say('Redis is already running');
      await startRedis();
      return say(`Redis started again on port ${redis.port} (same data)`);
    }
    const r = replicas.find((x) => String(x.n) === what || x.id === what);
    if (r && (verb === 'stop' || verb === 'kill')) {
      r.expectedExit = true;
      await stopProc(r.proc, verb === 'stop' ? 'SIGTERM' : 'SIGKILL');
      return say(`${r.id} ${verb === 'stop' ? 'stopped (SIGTERM)' : 'killed (SIGKILL)'}`);
    }
    if (r && verb === 'start') {
      await startReplica(r);
      return say(`${r.id} started`);
    }
    say('commands: stop 1|2, kill 1|2, start 1|2, stop redis, start redis, status');
  } catch (err) {
    say(`${text.trim()}: ${err.message}`);
  }
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say('stopping: replicas first (the ACTIVE one releases its lease), then Redis');
  await Promise.all(replicas.map((r) => stopProc(r.proc, 'SIGTERM')));
  await stopProc(redis.proc, 'SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  say('stopped');
  process.exit(code);
}

// Last resort if something above throws: never leave a child behind.
process.on('exit', () => {
  for (const p of [redis.proc, ...replicas.map((r) => r.proc)]) {
    if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
});

let interrupts = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    interrupts++;
    if (interrupts > 1) {
      say('second interrupt: killing everything now');
      process.exit(130);
    }
    void shutdown(0);
  });
}

async function main() {
  redis.port = Number(process.env.GRINDER_LOCAL_REDIS_PORT ?? (await freePort()));
  if (redis.port === 6379) fail("refusing to use port 6379: that is the machine's own Redis");
  await startRedis();
  say(`Redis: redis://127.0.0.1:${redis.port}/0 (appendonly, data in ${dir})`);
  await declareCluster();
  for (const r of replicas) {
    await startReplica(r);
    say(`${r.id}: http://localhost:${r.port}  (logs: ${r.log})`);
  }
  say('try: curl -sS http://localhost:' + replicas[0].port + '/readyz; echo   (not curl -f: a STANDBY answers 503)');
  say('Ctrl-C stops everything. Commands: stop 1|2, kill 1|2, start 1|2, stop redis, start redis, status');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => void command(line));
  for (;;) {
    if (!stopping) await report(false);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

main().catch((err) => {
  say(`could not start: ${err.message}`);
  void shutdown(1);
});
