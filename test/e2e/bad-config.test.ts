// `node dist/main.js` (the bundle, as `npm start` and the image run it) with a bad configuration:
// the exit code, the one stderr line, --help and --version. The rules themselves are unit tests
// (test/unit/config.test.ts); this checks what an operator sees, so it needs a build.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_EXIT_CODE } from '../../src/config';
import { SETTINGS } from '../../src/usage';

type Env = Record<string, string | undefined>;

describe('node dist/main.js with a bad configuration', () => {
  const MAIN_JS = join(__dirname, '..', '..', 'dist', 'main.js');

  // Only the variables under test: nothing from the developer's own GRINDER_* or OTEL_* settings.
  function run(env: Env): { status: number | null; stderr: string; stdout: string } {
    assert.ok(existsSync(MAIN_JS), `${MAIN_JS} is missing: run npm run build (npm test does)`);
    const r = spawnSync(process.execPath, [MAIN_JS], {
      env: { PATH: process.env.PATH, ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout };
  }

  const cases: [Env, string, string][] = [
    [{ GRINDER_HA_LOCK_TTL_MS: '500' }, 'GRINDER_HA_LOCK_TTL_MS', '"500"'],
    [{ GRINDER_HA_ENABLED: 'maybe' }, 'GRINDER_HA_ENABLED', '"maybe"'],
    [{ GRINDER_HA_RENEW_INTERVAL_MS: '10000' }, 'GRINDER_HA_RENEW_INTERVAL_MS', '"10000"'],
    [{ GRINDER_METRICS_PORT: '65536' }, 'GRINDER_METRICS_PORT', '"65536"'],
    [{ GRINDER_REDIS_URL: 'not a url' }, 'GRINDER_REDIS_URL', '"<unparsable>"'],
    [{ GRINDER_REDIS_URL: 'redis://SECRET@redis:6379/0' }, 'GRINDER_REDIS_URL', '"redis://***@redis:6379/0"'],
    [{ GRINDER_REDIS_URL: 'redis://redis/99' }, 'GRINDER_REDIS_URL', '"redis://redis/99"'],
    [{ GRINDER_HTTP_HOST: 'not a host' }, 'GRINDER_HTTP_HOST', '"not a host"'],
    [{ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER', '"zipkin"'],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' }, 'OTEL_EXPORTER_OTLP_PROTOCOL', '"thrift"'],
    [{ OTEL_LOG_LEVEL: 'loud' }, 'OTEL_LOG_LEVEL', '"loud"'],
  ];
  for (const [env, variable, value] of cases) {
    it(`exits ${CONFIG_EXIT_CODE} with one stderr line naming ${variable}`, () => {
      const r = run(env);
      assert.equal(r.status, CONFIG_EXIT_CODE);
      assert.equal(r.stdout, '');
      const lines = r.stderr.split('\n');
      assert.equal(lines.length, 2, `exactly one line on stderr, got ${JSON.stringify(r.stderr)}`);
      assert.equal(lines[1], '');
      const line = lines[0] as string;
      assert.ok(line.startsWith(`grinder: invalid configuration: ${variable}=${value}: `), line);
    });
  }

  it('exits 2 for a bad --metrics-port argument too', () => {
    const r = spawnSync(process.execPath, [MAIN_JS, '--metrics-port', '0'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, CONFIG_EXIT_CODE);
    assert.equal(r.stderr, 'grinder: invalid configuration: --metrics-port="0": must be a whole number from 1 to 65535\n');
  });

  // 192.0.2.1 is TEST-NET-1 (RFC 5737), never an address of this machine; .invalid never resolves (RFC 6761).
  for (const [host, why] of [
    ['192.0.2.1', 'is not an address of this machine'],
    ['grinder.invalid', 'does not resolve to an address'],
  ] as const) {
    it(`exits ${CONFIG_EXIT_CODE} when GRINDER_HTTP_HOST=${host} cannot be listened on`, () => {
      const r = run({ GRINDER_HTTP_HOST: host, GRINDER_METRICS_PORT: '19090' });
      assert.equal(r.status, CONFIG_EXIT_CODE, r.stderr);
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]?.startsWith(`grinder: could not start: cannot listen on ${host}:19090: GRINDER_HTTP_HOST=${host} ${why}`), lines[0]);
    });
  }

  it('--help lists every setting and exits 0; --version prints the version', () => {
    const help = spawnSync(process.execPath, [MAIN_JS, '--help'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(help.status, 0);
    assert.equal(help.stderr, '');
    for (const s of SETTINGS) assert.ok(help.stdout.includes(`  ${s.name}  `), `--help lists ${s.name}`);
    // Every variable the configuration reads is in the list.
    const read = new Set(
      readFileSync(join(__dirname, '..', '..', 'src', 'config.ts'), 'utf8')
        .match(/'GRINDER_[A-Z_]+'/g)
        ?.map((m) => m.slice(1, -1)),
    );
    for (const name of read)
      assert.ok(
        SETTINGS.some((s) => s.name === name),
        `${name} is missing from SETTINGS`,
      );
    // …and the README's configuration table documents each of them.
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
    for (const s of SETTINGS) assert.ok(readme.includes(`| \`${s.name}\``) || readme.includes(`\`${s.name}\`, `), `README.md does not document ${s.name}`);
    const version = spawnSync(process.execPath, [MAIN_JS, '--version'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(version.status, 0);
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    assert.equal(version.stdout, `${pkg.version}\n`);
  });

  it('does not print the Redis password when it stops on a bad value', () => {
    for (const env of [
      { GRINDER_REDIS_URL: 'redis://:s3cret@redis:6379/0', GRINDER_HA_ENABLED: 'true', GRINDER_HA_LOCK_TTL_MS: '500' },
      { GRINDER_REDIS_URL: 'redis://:s3cret@redis:6379/x', GRINDER_HA_ENABLED: 'true' },
      { GRINDER_REDIS_URL: 'redis://redis:6379/x?password=s3cret', GRINDER_HA_ENABLED: 'true' },
    ]) {
      const r = run(env);
      assert.equal(r.status, CONFIG_EXIT_CODE);
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.ok(!r.stderr.includes('s3cret'), r.stderr);
      assert.ok(!r.stdout.includes('s3cret'), r.stdout);
    }
  });
});
