// Runs the test files under test/ with Node's own test runner (TypeScript through tsx), tier by tier:
//
//   node scripts/run-tests.mjs                      every tier: unit, integration, faults, e2e, obs
//   node scripts/run-tests.mjs unit e2e             those tiers
//   node scripts/run-tests.mjs test/e2e/x.test.ts   just those files (each still in its tier's plan)
//   node scripts/run-tests.mjs --serial ...         every file alone, one after the other
//   ... -- --test-name-pattern=foo                  anything after -- goes to every `node --test`
//
// The unit tier runs in one `node --test` run, two files at a time, each in a process of its own
// (its files use fake time and start no processes, so their timings cannot disturb each other).
// Every other file runs in a `node --test` run of its own, and its output is printed as one block
// when it ends: files that run side by side cannot interleave their lines, and a failure reads as
// it does when the file runs alone.
//
// Files share no servers (each starts its own redis-server, replicas and prometheus on free
// ports), so what keeps two files apart is time, not state: many assert how long a failover or a
// stop took, and the machine may have 2 cores. Hence, per tier, a shared pool that runs at most
// SHARED_JOBS files at a time, and after it the files that run alone, with nothing beside them.
// Which files may share is listed below; a file not listed (a new one) runs alone until someone
// has looked at its timing assertions, so a new file can make the run slower but not flaky.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { stripVTControlCharacters } from 'node:util';

const TIERS = ['unit', 'integration', 'faults', 'e2e', 'obs'];

/*
 * The files outside test/unit that may run beside one other file (SHARED_JOBS = 2): their time
 * bounds, read from their assertions, leave a second or more of headroom, or they have none. The
 * rest run alone: runbook (a crash failover within TTL + one renew interval, 300 ms to spare),
 * cluster-view (a killed member gone within TTL + 300 ms), library (handovers within 400-600 ms,
 * a grace of 1.9-2.8 s), chaos (a 3-replica fault run, busy for its whole length) and scenarios
 * (time-scaled alert deadlines and a latency read within 30%).
 */
const SHARED = new Set([
  // Lease store semantics and scripts on a redis-server of their own; the tightest bound is a
  // 100 ms command timeout asserted under 550 ms.
  'test/integration/lock-conformance.test.ts',
  'test/integration/redis-lock.test.ts',
  'test/integration/membership.test.ts',
  'test/integration/tcp-proxy.test.ts',
  // scripts/build-if-stale.mjs in temporary projects: file times set explicitly, no clock.
  'test/integration/build-if-stale.test.ts',
  // Safety (no overlap, tokens only up) holds whatever the timing; liveness is asserted within
  // 3 x TTL (6 s) of a fault's end, and a leader within TTL + renew + 1 s (3.6 s) of a Sentinel
  // promotion, which takes about 2.1 s: the two fault files may run side by side.
  'test/faults/lease-faults.test.ts',
  'test/faults/redis-failover.test.ts',
  // Real replicas, with bounds of seconds: a stop under 2 s (takes ~0.5 s) or 3 s, a handover
  // gap under TTL / 2 (1 s), a first leader under 5 s, OTLP export gaps within 1.5 s; or none
  // (package: npm pack and install, bad-config/bad-input: exit codes and messages).
  'test/e2e/bad-config.test.ts',
  'test/e2e/bad-input.test.ts',
  'test/e2e/init.test.ts',
  'test/e2e/otel.test.ts',
  'test/e2e/package.test.ts',
  'test/e2e/service.test.ts',
  'test/e2e/stop.test.ts',
  'test/e2e/switchover.test.ts',
  // Offline checks (tsc, promtool, amtool, docker-compose config): CPU, but no time bounds.
  'test/obs/compose.test.ts',
  'test/obs/dashboard.test.ts',
  'test/obs/kubernetes.test.ts',
  'test/obs/promtool.test.ts',
  'test/obs/runbook.test.ts',
  // Real replicas and the ha:local script, with "eventually" waits only.
  'test/obs/metrics-lint.test.ts',
  'test/obs/ha-local.test.ts',
]);
const SHARED_JOBS = 2;

// A hung test (or a file kept alive by a socket a failing test forgot) must fail the run, not use
// up CI's 90 minutes: each test gets 3 minutes, each file 15, the whole run 40.
const TEST_TIMEOUT_MS = 3 * 60 * 1000;
const FILE_TIMEOUT_MS = 15 * 60 * 1000;
const RUN_TIMEOUT_MS = 40 * 60 * 1000;

const ROOT = resolve(import.meta.dirname, '..');

function collect(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function usage(msg) {
  console.error(`run-tests: ${msg}\nusage: node scripts/run-tests.mjs [--serial] [tier|dir|file ...] [-- node-test-flags]\ntiers: ${TIERS.join(', ')}`);
  process.exit(2);
}

function parseArgs(argv) {
  const dash = argv.indexOf('--');
  const own = dash === -1 ? argv : argv.slice(0, dash);
  const extra = dash === -1 ? [] : argv.slice(dash + 1);
  let serial = false;
  const files = [];
  for (const a of own) {
    if (a === '--serial') serial = true;
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (TIERS.includes(a)) files.push(...collect(join(ROOT, 'test', a)));
    else if (existsSync(a) && statSync(a).isDirectory()) files.push(...collect(a));
    else if (existsSync(a)) files.push(a);
    else usage(`no such tier, directory or file: ${a}`);
  }
  if (own.every((a) => a.startsWith('-'))) for (const t of TIERS) files.push(...collect(join(ROOT, 'test', t)));
  // Paths as the plan names them (test/<tier>/...), whatever form they were given in.
  const rel = [...new Set(files.map((f) => relative(ROOT, resolve(f)).split(sep).join('/')))];
  return { serial, extra, files: rel };
}

const tierOf = (file) => (TIERS.includes(file.split('/')[1]) ? file.split('/')[1] : 'other');

/**
 * Per tier (in TIERS order), groups of files that each run in one `node --test` run: first those that
 * share a pool of SHARED_JOBS slots, then those that run alone.
 */
function plan(files, serial) {
  const out = [];
  for (const tier of [...TIERS, 'other']) {
    const mine = files.filter((f) => tierOf(f) === tier);
    if (mine.length === 0) continue;
    if (tier === 'unit') {
      out.push({ tier, shared: [], alone: [mine] });
      continue;
    }
    const shares = (f) => !serial && SHARED.has(f);
    // Biggest first, a stand-in for slowest first: a long file started last would run on alone
    // while the other slot sits idle.
    const shared = mine.filter(shares).sort((a, b) => statSync(join(ROOT, b)).size - statSync(join(ROOT, a)).size);
    out.push({ tier, shared: shared.map((f) => [f]), alone: mine.filter((f) => !shares(f)).map((f) => [f]) });
  }
  return out;
}

const running = new Map(); // pid -> what it runs
let aborted = false;

/** Kills a group's processes: the test process and every redis-server, replica, prometheus it started. */
function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function killAll() {
  aborted = true;
  for (const pid of running.keys()) killGroup(pid);
}

/** The spec reporter's closing lines (ℹ tests 12, ℹ pass 11, ...), or null when the file never got that far. */
function counts(output) {
  const got = {};
  for (const m of stripVTControlCharacters(output).matchAll(/^ℹ (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) got[m[1]] = Number(m[2]);
  if (got.tests === undefined) return null;
  // A cancelled test (its file or parent timed out) did not pass; a todo did not run.
  return { tests: got.tests, passed: got.pass ?? 0, failed: (got.fail ?? 0) + (got.cancelled ?? 0), skipped: (got.skipped ?? 0) + (got.todo ?? 0) };
}

/** Runs `files` in one `node --test` process and prints its output as one block. */
function runGroup(files, extra, note) {
  const name = files.length === 1 ? files[0] : `test/${tierOf(files[0])}/ (${files.length} files in one run)`;
  // Several files in one run still get a process each (the default isolation): in one shared
  // process, an error thrown while a file loads after its first test registered goes unreported.
  const isolation = files.length === 1 ? [] : [`--test-concurrency=${SHARED_JOBS}`];
  return new Promise((done) => {
    const started = performance.now();
    console.log(`▷ ${name}${files.length === 1 ? note : ''}`);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--test', ...isolation, `--test-timeout=${TEST_TIMEOUT_MS}`, '--test-reporter=spec', ...extra, ...files],
      // A process group of its own, so a timeout can take the file's servers and replicas with it.
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    running.set(child.pid, name);
    const chunks = [];
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, FILE_TIMEOUT_MS);
    // Whatever the file left behind (a replica a failed test did not stop) goes with it, also so
    // that a leftover holding the output pipe open cannot keep 'close' from coming.
    child.on('exit', () => killGroup(child.pid));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child.pid);
      const seconds = (performance.now() - started) / 1000;
      const output = Buffer.concat(chunks).toString('utf8');
      const c = counts(output) ?? { tests: 0, passed: 0, failed: 0, skipped: 0 };
      let why = '';
      if (timedOut) why = `killed after ${FILE_TIMEOUT_MS / 1000} s, the limit per file`;
      else if (signal) why = aborted ? 'killed: the run was stopped' : `killed by ${signal}`;
      else if (code !== 0) why = `exit ${code}`;
      // No test at all means the file did not load its tests, unless a name filter left none.
      const filtered = extra.some((arg) => arg.startsWith('--test-name-pattern') || arg.startsWith('--test-skip-pattern'));
      const ok = code === 0 && c.failed === 0 && (c.tests > 0 || filtered);
      // A file that died before its summary still counts as one failure.
      if (!ok && c.failed === 0) c.failed = 1;
      const head = `${ok ? '✔' : '✖'} ${name}: ${c.tests} tests, ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped, ${seconds.toFixed(1)} s${why ? ` (${why})` : ''}`;
      console.log(`\n── ${head}\n${output.trimEnd()}\n`);
      done({ name, fileCount: files.length, ok, seconds, ...c });
    });
  });
}

async function pool(groups, jobs, extra) {
  const results = [];
  const queue = [...groups];
  const worker = async () => {
    while (queue.length > 0 && !aborted) {
      const group = queue.shift();
      results.push(await runGroup(group, extra, jobs > 1 ? ` (shared, ${jobs} at a time)` : ' (alone)'));
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, groups.length) }, worker));
  return results;
}

const { serial, extra, files } = parseArgs(process.argv.slice(2));
if (files.length === 0) usage('no test files found');

process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});
process.on('SIGTERM', () => {
  killAll();
  process.exit(143);
});
const runTimer = setTimeout(() => {
  console.error(`\nrun-tests: the run took more than ${RUN_TIMEOUT_MS / 60000} min; killing ${[...running.values()].join(', ')}`);
  killAll();
}, RUN_TIMEOUT_MS);
runTimer.unref();

const runStarted = performance.now();
const tiers = [];
for (const { tier, shared, alone } of plan(files, serial)) {
  if (aborted) break;
  const started = performance.now();
  const results = [...(await pool(shared, SHARED_JOBS, extra)), ...(await pool(alone, 1, extra))];
  tiers.push({ tier, results, seconds: (performance.now() - started) / 1000 });
}
const total = (performance.now() - runStarted) / 1000;

const sum = (rs, k) => rs.reduce((n, r) => n + r[k], 0);
const row = (name, rs, seconds) =>
  `${name.padEnd(12)}${String(sum(rs, 'fileCount')).padStart(6)}${String(sum(rs, 'tests')).padStart(7)}${String(sum(rs, 'passed')).padStart(8)}${String(sum(rs, 'failed')).padStart(8)}${String(sum(rs, 'skipped')).padStart(9)}${seconds.toFixed(1).padStart(10)} s`;
const all = tiers.flatMap((t) => t.results);
console.log(
  `${'tier'.padEnd(12)}${'files'.padStart(6)}${'tests'.padStart(7)}${'passed'.padStart(8)}${'failed'.padStart(8)}${'skipped'.padStart(9)}${'wall'.padStart(12)}`,
);
for (const t of tiers) console.log(row(t.tier, t.results, t.seconds));
console.log(row('total', all, total));
const failed = all.filter((r) => !r.ok);
if (aborted) console.log(`\nrun aborted: files that did not run are not in the table`);
if (failed.length > 0) console.log(`\nfailed: ${failed.map((r) => r.name).join(', ')}`);
process.exit(failed.length > 0 || aborted ? 1 : 0);
