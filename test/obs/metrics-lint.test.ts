// `promtool check metrics` against the live /metrics of real replicas (one ACTIVE, one STANDBY),
// and every grinder_* metric the shipped rules and dashboard read is really exported.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedisServer } from '../../tools/kit/redis';
import { MAIN_JS, REPO_ROOT, Replica } from '../../tools/kit/replica';
import { freePort } from '../../tools/kit/ports';
import { waitFor } from '../../tools/kit/time';
import { RuntimeMetric } from '../../src/telemetry/names';

let redis: RedisServer | undefined;
const replicas: Replica[] = [];

before(async () => {
  readFileSync(MAIN_JS); // ENOENT here means `npm run build` has not run
  redis = await RedisServer.start();
  for (const id of ['grinder_live_1', 'grinder_live_2']) {
    replicas.push(
      await Replica.start({
        env: {
          GRINDER_HA_ENABLED: 'true',
          GRINDER_REDIS_URL: redis.url,
          GRINDER_HA_LOCK_TTL_MS: '1500',
          GRINDER_HA_RENEW_INTERVAL_MS: '300',
          GRINDER_INSTANCE_ID: id,
          GRINDER_LOG_LEVEL: 'warn',
        },
      }),
    );
  }
  // One ACTIVE (after the one-TTL lock delay on a fresh Redis) and renewing, one STANDBY.
  await waitFor(
    'one ACTIVE and one STANDBY replica',
    async () => {
      const roles = (await Promise.all(replicas.map((r) => r.readyRole()))).sort();
      return roles.join() === 'active,standby' ? true : undefined;
    },
    15_000,
    100,
  );
  await waitFor(
    'the ACTIVE replica to record renewals',
    async () => {
      for (const r of replicas) {
        const m = await r.get('/metrics');
        if (/^grinder_ha_renew_latency_seconds_count\{?[^}]*\}? [1-9]/m.test(m.body)) return true;
      }
      return undefined;
    },
    10_000,
    100,
  );
});

after(async () => {
  for (const r of replicas) await r.stop();
  await redis?.cleanup();
});

test('promtool check metrics accepts the live /metrics of an ACTIVE and a STANDBY replica', async () => {
  for (const r of replicas) {
    const role = await r.readyRole();
    const m = await r.get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.contentType ?? '', /^text\/plain/);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: m.body, encoding: 'utf8' });
    if (lint.error) throw new Error(`could not run promtool: ${lint.error.message}`);
    assert.equal(lint.status, 0, `promtool check metrics (${role} replica):\n${lint.stdout}${lint.stderr}`);
    assert.equal(`${lint.stdout}${lint.stderr}`.trim(), '', `lint findings (${role} replica)`);
  }
});

test('every grinder metric the rules and the dashboard read is exported', async () => {
  const sources = [
    ...readdirSync(join(REPO_ROOT, 'prometheus', 'rules')).map((f) => join(REPO_ROOT, 'prometheus', 'rules', f)),
    join(REPO_ROOT, 'grafana', 'dashboards', 'grinder-overview.json'),
  ];
  // Metric names only: grinder_… not directly after "grinder:" (recording rule names).
  const used = new Set<string>();
  for (const f of sources) {
    for (const m of readFileSync(f, 'utf8').matchAll(/(?<![\w:])grinder_[a-z_]+/g)) used.add(m[0]);
  }
  // Dashboard text mentions the instance ids (grinder_live_1/2), label values; grinder_cluster is
  // a label and the grinder_*_url names are Prometheus' external labels.
  for (const id of ['grinder_live_', 'grinder_cluster', 'grinder_runbook_url', 'grinder_grafana_url']) used.delete(id);
  assert.ok(used.size >= 10, `only found ${[...used].join(', ')}`);

  const exported = new Set<string>();
  for (const r of replicas) {
    for (const line of (await r.get('/metrics')).body.split('\n')) {
      const name = /^([a-zA-Z_:][\w:]*)/.exec(line)?.[1];
      if (name && !line.startsWith('#')) exported.add(name);
    }
  }
  // The runtime metrics the dashboard reads, from the OpenTelemetry runtime instrumentation.
  for (const name of Object.values(RuntimeMetric)) used.add(name);
  // A histogram is named by its family in prose and by _bucket/_sum/_count in queries.
  const missing = [...used].filter((n) => !exported.has(n) && !exported.has(`${n}_bucket`));
  assert.deepEqual(missing, [], `used by rules/dashboard but not exported: ${missing.join(', ')}`);
  // Every contract metric from the first scrape of every HA replica: the renew latency histogram
  // too, on the standby that never renewed (count 0).
  for (const r of replicas) {
    assert.match((await r.get('/metrics')).body, /^grinder_ha_renew_latency_seconds_count\{grinder_cluster="[^"]+"\} \d+$/m);
  }
  // No OTel scope labels leak into the series the dashboard groups by.
  for (const r of replicas) assert.doesNotMatch((await r.get('/metrics')).body, /otel_scope_/);
});

/** The value of the one series of `name` in a /metrics body (the grinder_cluster label only). */
function sample(body: string, name: string): number | undefined {
  const m = new RegExp(`^${name}\\{grinder_cluster="[^"]+"\\} (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : undefined;
}

test('a fresh STANDBY that never led nor saw a token (Redis unreachable) exports the token and the write age from its first scrape', async () => {
  // Nothing listens there: every lease operation fails, so it never leads and never sees a token.
  const replica = await Replica.start({
    env: {
      GRINDER_HA_ENABLED: 'true',
      GRINDER_REDIS_URL: `redis://127.0.0.1:${await freePort()}/0`,
      GRINDER_HA_LOCK_TTL_MS: '1500',
      GRINDER_HA_RENEW_INTERVAL_MS: '300',
      GRINDER_INSTANCE_ID: 'grinder_unreachable',
      GRINDER_LOG_LEVEL: 'fatal',
    },
  });
  try {
    const check = async (when: string): Promise<void> => {
      const body = (await replica.get('/metrics')).body;
      assert.equal(sample(body, 'grinder_ha_fencing_token'), 0, `${when}: fencing token 0 (none seen yet)`);
      const age = sample(body, 'grinder_live_last_accepted_write_age_seconds');
      const uptime = sample(body, 'grinder_uptime_seconds');
      assert.ok(age !== undefined && uptime !== undefined, `${when}: the write age and the uptime are exported`);
      // No write yet: the age counts from the process start.
      assert.ok(Math.abs(age - uptime) < 0.1, `${when}: write age ${age} s, uptime ${uptime} s`);
      assert.match(body, /^grinder_live_writes_total\{result="accepted",grinder_cluster="[^"]+"\} 0$/m, `${when}: no accepted write`);
    };
    await check('first scrape');
    await waitFor('the replica to be STANDBY', async () => ((await replica.readyRole()) === 'standby' ? true : undefined), 15_000, 100);
    await check('STANDBY');
    const status = JSON.parse((await replica.get('/status')).body) as { fencing_token: number | null };
    assert.equal(status.fencing_token, null, 'it has really seen no token');
  } finally {
    await replica.stop();
  }
});
