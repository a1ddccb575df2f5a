// The npm package as an application gets it: `npm pack` (which builds through prepack), then
// `npm install <tarball>` into a project of its own in a temporary directory, and the library used
// from there against a redis-server of this test's own.
//
// The pack runs on a copy of the sources (package files, scripts/build.mjs, src/), with this
// repository's node_modules linked in for the build tools: prepack rebuilds dist/, and the shared
// dist/ other test files run must not disappear under them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServer } from '../../tools/kit/redis';
import { REPO_ROOT } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

let root: string;
let project: string;
let server: RedisServer;
let raw: Redis;
let tarball: string;
let packedFiles: string[];

/** The parent's npm_* variables (set when this runs under `npm test`) would steer the child npm. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...extra };
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000, env = cleanEnv()): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')} could not run: ${r.error.message}`);
  return r;
}

function mustRun(cmd: string, args: string[], cwd: string, timeoutMs?: number): string {
  const r = run(cmd, args, cwd, timeoutMs);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A lease record's state and holder (`2|<state>|<ver>|<token>|<ttl>|<maxttl>|<session>|<instance id>`). */
async function leaseRecord(lockKey: string): Promise<{ state: string; holder: string } | null> {
  const text = await raw.get(lockKey);
  if (text === null) return null;
  const f = text.split('|');
  return { state: f[1] ?? '', holder: f[7] ?? '' };
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'grinder-package-'));
  const staging = join(root, 'staging');
  mkdirSync(join(staging, 'scripts'), { recursive: true });
  for (const f of ['package.json', 'package-lock.json', 'README.md', 'LICENSE', 'CHANGELOG.md']) cpSync(join(REPO_ROOT, f), join(staging, f));
  cpSync(join(REPO_ROOT, 'scripts', 'build.mjs'), join(staging, 'scripts', 'build.mjs'));
  cpSync(join(REPO_ROOT, 'src'), join(staging, 'src'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(staging, 'node_modules'), 'dir');
  const packed = JSON.parse(mustRun('npm', ['pack', '--json', '--pack-destination', root], staging)) as { filename: string; files: { path: string }[] }[];
  const first = packed[0];
  assert.ok(first, 'npm pack reported its tarball');
  tarball = join(root, first.filename);
  packedFiles = first.files.map((f) => f.path);

  project = join(root, 'app');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'grinder-ha-consumer', version: '1.0.0', private: true }, null, 2));
  mustRun('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], project, 170_000);

  server = await RedisServer.start();
  raw = new Redis(server.url);
});

after(async () => {
  raw?.disconnect();
  await server?.cleanup();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the grinder-ha package, packed and installed into another project', () => {
  it('ships the service, the library, its declarations and the Lua scripts, and no sources', () => {
    for (const f of ['dist/index.js', 'dist/main.js', 'dist/types/index.d.ts', 'dist/types/library/types.d.ts', 'package.json', 'README.md', 'LICENSE']) {
      assert.ok(packedFiles.includes(f), `${f} is in the package (${packedFiles.length} files)`);
    }
    assert.ok(
      packedFiles.some((f) => /^dist\/scripts\/acquire-\d+\.lua$/.test(f)),
      'the Lua scripts are next to both bundles',
    );
    assert.ok(
      packedFiles.some((f) => f === 'dist/scripts/include/lease-record.lua'),
      'with their includes',
    );
    assert.deepEqual(
      packedFiles.filter((f) => f.startsWith('src/') || f.startsWith('test/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))),
      [],
    );
  });

  it('require("grinder-ha") has no side effects: no output, no server, no timers, no signal handlers, and exits at once', () => {
    const plain = run(process.execPath, ['-e', "require('grinder-ha')"], project, 10_000);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(plain.stdout, '');
    assert.equal(plain.stderr, '');

    const probe = [
      'const before = new Set(process.getActiveResourcesInfo());',
      "const lib = require('grinder-ha');",
      'setImmediate(() => {',
      // ioredis and pino touch process.stdout/stderr when they load, which opens the stdio pipe:
      // not a server, socket or timer, and it keeps no process alive.
      "  const added = process.getActiveResourcesInfo().filter((r) => !before.has(r) && r !== 'PipeWrap' && r !== 'TTYWrap');",
      "  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1'].filter((s) => process.listenerCount(s) > 0);",
      '  console.log(JSON.stringify({ exports: Object.keys(lib).sort(), added, signals }));',
      '});',
    ].join('\n');
    const r = run(process.execPath, ['-e', probe], project, 10_000);
    assert.equal(r.status, 0, r.stderr);
    const seen = JSON.parse(r.stdout) as { exports: string[]; added: string[]; signals: string[] };
    assert.deepEqual(seen.exports, ['FenceUsageError', 'InvalidOptionError', 'createElector']);
    assert.deepEqual(seen.added, [], 'no handle (server, socket, timer) was opened by the import');
    assert.deepEqual(seen.signals, []);

    // An ES module gets the same named exports from the CommonJS bundle.
    const esm = run(
      process.execPath,
      ['--input-type=module', '-e', "import { createElector } from 'grinder-ha'; console.log(typeof createElector);"],
      project,
      10_000,
    );
    assert.equal(esm.stdout.trim(), 'function', esm.stderr);
  });

  it('the exports map allows the package and its package.json, and blocks deep paths', () => {
    const probe = [
      "const out = { version: require('grinder-ha/package.json').version };",
      "for (const p of ['grinder-ha/dist/main.js', 'grinder-ha/dist/index.js', 'grinder-ha/dist/types/index.d.ts', 'grinder-ha/src/index.ts']) {",
      "  try { require(p); out[p] = 'loaded'; } catch (err) { out[p] = err.code; }",
      '}',
      'console.log(JSON.stringify(out));',
    ].join('\n');
    const r = run(process.execPath, ['-e', probe], project, 10_000);
    assert.equal(r.status, 0, r.stderr);
    const own = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual(JSON.parse(r.stdout), {
      version: own.version,
      'grinder-ha/dist/main.js': 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      'grinder-ha/dist/index.js': 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      'grinder-ha/dist/types/index.d.ts': 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      'grinder-ha/src/index.ts': 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
    // The service stays reachable as the package's bin.
    const bin = run(join(project, 'node_modules', '.bin', 'grinder'), ['--version'], project, 10_000);
    assert.equal(bin.stdout.trim(), own.version, bin.stderr);
  });

  it('createElector against a real Redis: becomes ACTIVE with a token, a fenced append is accepted, stop() releases the lease, and the process exits by itself', async () => {
    const lockKey = 'package-test:lock';
    const script = `
const { createElector } = require('grinder-ha');
const say = (o) => console.log(JSON.stringify(o));
const elector = createElector({ redisUrl: process.env.REDIS_URL, lockKey: ${JSON.stringify(lockKey)}, instanceId: 'pkg-1', ttlMs: 1000 });
let wrote;
const written = new Promise((resolve) => (wrote = resolve));
elector.run(async (ctx) => {
  say({ event: 'leading', token: ctx.token, role: elector.role() });
  const r = await ctx.fence.append(ctx.fence.key('jobs'), { job: 1 });
  say({ event: 'appended', result: r });
  wrote();
  await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
});
written.then(async () => {
  await elector.stop();
  say({ event: 'stopped', role: elector.role() });
});
`;
    writeFileSync(join(project, 'use.cjs'), script);
    const child = spawn(process.execPath, ['use.cjs'], { cwd: project, env: cleanEnv({ REDIS_URL: server.url }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.equal(code, 0, `the script exits by itself once stopped:\n${stdout}\n${stderr}`);
    const events = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; token?: number; role?: string; result?: { accepted: boolean; id?: string } });
    const leading = events.find((e) => e.event === 'leading');
    assert.equal(leading?.role, 'active');
    assert.ok((leading?.token ?? 0) > 0, 'a real fencing token');
    const appended = events.find((e) => e.event === 'appended');
    assert.equal(appended?.result?.accepted, true);
    assert.match(appended?.result?.id ?? '', /^\d+-\d+$/);
    assert.deepEqual(events.at(-1), { event: 'stopped', role: 'standby' });
    assert.deepEqual(await leaseRecord(lockKey), { state: 'free', holder: 'pkg-1' }, 'released on stop');
    const entries = await raw.xrange(`{${lockKey}}:jobs`, '-', '+');
    assert.deepEqual(entries[0]?.[1], ['token', String(leading?.token), 'job', '1']);
  });

  it('the example type-checks against the installed declarations, which reach no internal module', () => {
    cpSync(join(REPO_ROOT, 'examples', 'leader-work.mts'), join(project, 'leader-work.mts'));
    const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = [
      '--noEmit',
      '--strict',
      '--target',
      'es2022',
      '--module',
      'node16',
      '--moduleResolution',
      'node16',
      '--types',
      'node',
      '--typeRoots',
      join(REPO_ROOT, 'node_modules', '@types'),
      '--listFilesOnly',
      'leader-work.mts',
    ];
    const listed = run(process.execPath, [tsc, ...args], project, 60_000);
    assert.equal(listed.status, 0, listed.stdout + listed.stderr);
    const ours = listed.stdout
      .split('\n')
      .filter((f) => f.includes('node_modules/grinder-ha/'))
      .map((f) => f.slice(f.indexOf('node_modules/grinder-ha/') + 'node_modules/grinder-ha/'.length))
      .sort();
    assert.deepEqual(ours, ['dist/types/ha/role.d.ts', 'dist/types/index.d.ts', 'dist/types/library/errors.d.ts', 'dist/types/library/types.d.ts']);
    const checked = run(process.execPath, [tsc, ...args.filter((a) => a !== '--listFilesOnly')], project, 60_000);
    assert.equal(checked.status, 0, `the example does not type-check against the package:\n${checked.stdout}${checked.stderr}`);

    // And a type error in a use of the API is caught, so the check above means something.
    writeFileSync(join(project, 'wrong.mts'), "import { createElector } from 'grinder-ha';\ncreateElector({ redisUrl: 'redis://x', ttlMs: '5000' });\n");
    const wrong = run(process.execPath, [tsc, ...args.filter((a) => a !== '--listFilesOnly' && a !== 'leader-work.mts'), 'wrong.mts'], project, 60_000);
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stdout, /wrong\.mts\(2,\d+\): error TS2322/);
  });

  it('the example runs from the installed package and stops cleanly on SIGTERM', async () => {
    const lockKey = 'package-test:example';
    const child = spawn(process.execPath, ['leader-work.mts'], {
      cwd: project,
      env: cleanEnv({ REDIS_URL: server.url, LOCK_KEY: lockKey, TTL_MS: '1000' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      await waitFor('the example to write as leader', () => (/: wrote \d+-\d+/.test(stdout) ? true : undefined), 10_000);
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 5_000))]);
      assert.equal(code, 0, `exit after SIGTERM:\n${stdout}\n${stderr}`);
    } finally {
      child.kill('SIGKILL');
    }
    assert.match(stdout, /active -> standby/);
    assert.equal((await leaseRecord(lockKey))?.state, 'free', 'the lease was released on SIGTERM');
  });
});
