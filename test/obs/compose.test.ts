// The compose files and the Dockerfile, checked offline: they validate under Debian's
// docker-compose 1.29 (`config -q`, alone and stacked), and the topology the runbook promises
// (container names, ports, env, health checks, pinned images) is read back from what
// `docker-compose config` resolves, not from the raw text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../tools/kit/replica';

const HA = 'docker-compose.ha.yml';
const OBS = 'docker-compose.obs.yml';
const SENTINEL = 'docker-compose.sentinel.yml';

interface PortMapping {
  published: number | string;
  target: number | string;
  protocol?: string;
}

interface Service {
  image?: string;
  build?: { context: string } | string;
  container_name?: string;
  command?: string[] | string;
  environment?: Record<string, string | null>;
  ports?: PortMapping[];
  volumes?: string[];
  healthcheck?: { test: string[] | string; interval?: string };
  depends_on?: Record<string, { condition: string }>;
}

interface ComposeConfig {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function compose(files: string[], args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('docker-compose', [...files.flatMap((f) => ['-f', f]), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    // The resolved config must not depend on whoever runs the test.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
  });
  if (r.error) throw new Error(`could not run docker-compose (apt-get install docker-compose): ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function resolved(files: string[]): ComposeConfig {
  const r = compose(files, ['config']);
  assert.equal(r.status, 0, `docker-compose ${files.join(' + ')} config failed:\n${r.stderr}`);
  return parse(r.stdout) as ComposeConfig;
}

function service(cfg: ComposeConfig, name: string): Service {
  const s = cfg.services[name];
  assert.ok(s, `service ${name} missing; have: ${Object.keys(cfg.services).join(', ')}`);
  return s;
}

function hostPorts(s: Service): { published: number; target: number }[] {
  return (s.ports ?? []).map((p) => ({ published: Number(p.published), target: Number(p.target) }));
}

function testArgs(s: Service): string[] {
  const t = s.healthcheck?.test;
  return Array.isArray(t) ? t : t === undefined ? [] : [t];
}

/** Exact versions only: name:1.2.3 or name:v1.2.3 (optionally -suffix), never latest or a major. */
const PINNED = /^[\w./-]+:v?\d+\.\d+\.\d+(?:[-\w.]*)?$/;

for (const files of [[HA], [OBS], [HA, OBS], [SENTINEL], [SENTINEL, OBS]]) {
  test(`docker-compose ${files.map((f) => `-f ${f}`).join(' ')} config -q exits 0`, () => {
    const r = compose(files, ['config', '-q']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', `warnings from docker-compose: ${r.stderr}`);
  });
}

test('the HA file is exactly the runbook topology', () => {
  const cfg = resolved([HA]);
  assert.deepEqual(Object.keys(cfg.services).sort(), ['grinder_init', 'grinder_live_1', 'grinder_live_2', 'redis']);

  // `grinder init` runs once, after Redis is up and before either replica, with their settings.
  const init = service(cfg, 'grinder_init');
  const initCmd = Array.isArray(init.command) ? init.command : [init.command];
  assert.deepEqual(initCmd, ['node', 'dist/main.js', 'init']);
  assert.deepEqual(init.depends_on, { redis: { condition: 'service_healthy' } });
  assert.equal(init.environment?.GRINDER_REDIS_URL, 'redis://redis:6379/0');
  assert.equal(init.environment?.GRINDER_HA_LOCK_KEY, 'grinder:leader:lock');
  assert.deepEqual(hostPorts(init), []);

  const redis = service(cfg, 'redis');
  assert.equal(redis.container_name, 'grinder-redis');
  assert.match(redis.image ?? '', PINNED);
  assert.match(redis.image ?? '', /^redis:/);
  const cmd = Array.isArray(redis.command) ? redis.command.join(' ') : (redis.command ?? '');
  assert.match(cmd, /--appendonly yes/, 'Redis must persist (appendonly)');
  assert.deepEqual(testArgs(redis), ['CMD', 'redis-cli', 'ping']);
  assert.deepEqual(redis.ports ?? [], [], 'Redis must not publish a host port');
  assert.ok(
    (redis.volumes ?? []).some((v) => /:\/data(:|$)/.test(v)),
    'Redis data must live on a volume',
  );

  const expected: Record<string, number> = { grinder_live_1: 9090, grinder_live_2: 9091 };
  for (const [name, hostPort] of Object.entries(expected)) {
    const s = service(cfg, name);
    assert.equal(s.container_name, name);
    const context = typeof s.build === 'string' ? s.build : s.build?.context;
    assert.equal(context, REPO_ROOT, `${name} must be built from the repo (build: .)`);
    assert.deepEqual(hostPorts(s), [{ published: hostPort, target: 9090 }]);
    const env = s.environment ?? {};
    assert.equal(env.GRINDER_HA_ENABLED, 'true');
    assert.equal(env.GRINDER_REDIS_URL, 'redis://redis:6379/0');
    assert.equal(env.GRINDER_HA_LOCK_TTL_MS, '10000');
    assert.equal(env.GRINDER_HA_RENEW_INTERVAL_MS, '3000');
    assert.equal(env.GRINDER_INSTANCE_ID, name);
    assert.equal(env.GRINDER_METRICS_PORT, '9090');
    assert.deepEqual(s.depends_on, { redis: { condition: 'service_healthy' }, grinder_init: { condition: 'service_completed_successfully' } });
    const probe = testArgs(s).join(' ');
    assert.match(probe, /\/healthz/, `${name} healthcheck must probe /healthz`);
    assert.match(probe, /127\.0\.0\.1:9090/);
    // A small HTTP probe, not a whole Node process every few seconds per replica.
    assert.equal(testArgs(s)[1], 'wget', `${name} healthcheck must use the image's BusyBox wget: ${probe}`);
  }
});

test("the Sentinel file: one master, two replicas, three Sentinels and the runbook's two replicas following them", () => {
  const cfg = resolved([SENTINEL]);
  assert.deepEqual(Object.keys(cfg.services).sort(), [
    'grinder_live_1',
    'grinder_live_2',
    'redis-master',
    'redis-replica-1',
    'redis-replica-2',
    'sentinel-1',
    'sentinel-2',
    'sentinel-3',
  ]);
  const master = service(cfg, 'redis-master');
  assert.equal(master.container_name, 'grinder-redis-master');
  for (const name of ['redis-master', 'redis-replica-1', 'redis-replica-2', 'sentinel-1', 'sentinel-2', 'sentinel-3']) {
    const s = service(cfg, name);
    assert.match(s.image ?? '', PINNED, `${name} image pinned`);
    assert.deepEqual(s.ports ?? [], [], `${name} must not publish a host port`);
    assert.ok(testArgs(s).join(' ').includes('ping'), `${name} has a health check`);
  }
  for (const name of ['redis-master', 'redis-replica-1', 'redis-replica-2']) {
    const cmd = Array.isArray(service(cfg, name).command) ? (service(cfg, name).command as string[]).join(' ') : '';
    assert.match(cmd, /--appendonly yes --appendfsync always/, `${name} persists every write`);
  }
  for (const name of ['redis-replica-1', 'redis-replica-2']) {
    assert.match((service(cfg, name).command as string[]).join(' '), /--replicaof redis-master 6379/);
  }
  const sentinelScript = JSON.stringify(service(cfg, 'sentinel-1'));
  assert.match(sentinelScript, /sentinel monitor grinder redis-master 6379 2/, 'quorum of two of the three Sentinels');
  const expected: Record<string, number> = { grinder_live_1: 9090, grinder_live_2: 9091 };
  for (const [name, hostPort] of Object.entries(expected)) {
    const s = service(cfg, name);
    assert.equal(s.container_name, name);
    assert.deepEqual(hostPorts(s), [{ published: hostPort, target: 9090 }]);
    const env = s.environment ?? {};
    assert.equal(env.GRINDER_REDIS_URL, 'redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/grinder/0');
    assert.equal(env.GRINDER_REDIS_MIN_REPLICAS, '1', 'every lease write on a replica, whatever the master reports as connected');
    assert.equal(env.GRINDER_HA_LOCK_TTL_MS, '10000');
    assert.equal(env.GRINDER_INSTANCE_ID, name);
    assert.deepEqual(Object.keys(s.depends_on ?? {}).sort(), ['sentinel-1', 'sentinel-2', 'sentinel-3']);
    assert.deepEqual(
      testArgs(s),
      ['CMD', 'wget', '-q', '-T', '2', '-O', '/dev/null', 'http://127.0.0.1:9090/healthz'],
      `${name} healthcheck must be the image's small wget probe, not a Node process`,
    );
  }
});

test('the observability stack adds Prometheus, Alertmanager, Grafana and Tempo on non-clashing ports', () => {
  const cfg = resolved([HA, OBS]);
  const want: Record<string, { container: string; ports: { published: number; target: number }[] }> = {
    prometheus: { container: 'grinder-prometheus', ports: [{ published: 9092, target: 9090 }] },
    alertmanager: { container: 'grinder-alertmanager', ports: [{ published: 9093, target: 9093 }] },
    grafana: { container: 'grinder-grafana', ports: [{ published: 3000, target: 3000 }] },
    tempo: {
      container: 'grinder-tempo',
      ports: [
        { published: 3200, target: 3200 },
        { published: 4317, target: 4317 },
        { published: 4318, target: 4318 },
      ],
    },
  };
  for (const [name, w] of Object.entries(want)) {
    const s = service(cfg, name);
    assert.equal(s.container_name, w.container);
    assert.deepEqual(hostPorts(s), w.ports, `${name} ports`);
  }

  // Every image pinned to an exact version; no host port used twice across both files.
  const seen = new Map<number, string>();
  for (const [name, s] of Object.entries(cfg.services)) {
    if (s.image !== undefined) assert.match(s.image, PINNED, `${name} image ${s.image} is not pinned`);
    for (const p of hostPorts(s)) {
      assert.ok(!seen.has(p.published), `host port ${p.published} used by ${seen.get(p.published)} and ${name}`);
      seen.set(p.published, name);
    }
  }

  // The replicas keep their HA settings and gain the OTLP endpoint of the Tempo service.
  for (const name of ['grinder_live_1', 'grinder_live_2']) {
    const env = service(cfg, name).environment ?? {};
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://tempo:4318');
    assert.equal(env.GRINDER_INSTANCE_ID, name);
    assert.equal(env.GRINDER_HA_ENABLED, 'true');
    assert.deepEqual(service(cfg, name).depends_on, { redis: { condition: 'service_healthy' }, grinder_init: { condition: 'service_completed_successfully' } });
  }

  // Grafana: anonymous viewer, the overview dashboard as home, and that file is really mounted.
  const grafana = service(cfg, 'grafana');
  const genv = grafana.environment ?? {};
  assert.equal(genv.GF_AUTH_ANONYMOUS_ENABLED, 'true');
  assert.equal(genv.GF_AUTH_ANONYMOUS_ORG_ROLE, 'Viewer');
  const home = genv.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '';
  const mountFor = (s: Service, inContainer: string): string | undefined => {
    for (const v of s.volumes ?? []) {
      const [src, dst] = v.split(':');
      if (dst !== undefined && src !== undefined && (inContainer === dst || inContainer.startsWith(`${dst}/`))) {
        return join(src, inContainer.slice(dst.length));
      }
    }
    return undefined;
  };
  const homeOnHost = mountFor(grafana, home);
  assert.ok(homeOnHost && existsSync(homeOnHost), `home dashboard ${home} is not a mounted repo file`);
  assert.ok(mountFor(grafana, '/etc/grafana/provisioning/datasources'), 'datasource provisioning not mounted');

  // Bind-mounted sources all exist in the repo.
  for (const [name, s] of Object.entries(cfg.services)) {
    for (const v of s.volumes ?? []) {
      const src = v.split(':')[0] ?? '';
      if (src.startsWith('/')) assert.ok(existsSync(src), `${name} mounts ${src}, which does not exist`);
    }
  }

  // Prometheus reads the shipped config and rules.
  const prom = service(cfg, 'prometheus');
  assert.equal(mountFor(prom, '/etc/prometheus/prometheus.yml'), join(REPO_ROOT, 'prometheus', 'prometheus.yml'));
  assert.equal(mountFor(prom, '/etc/prometheus/rules'), join(REPO_ROOT, 'prometheus', 'rules'));
  // Tempo reads the shipped config.
  assert.equal(mountFor(service(cfg, 'tempo'), '/etc/tempo/tempo.yaml'), join(REPO_ROOT, 'grafana', 'tempo', 'tempo.yaml'));
});

test('prometheus.yml, the Grafana datasources and Tempo point at the compose services', () => {
  const cfg = resolved([HA, OBS]);
  const services = new Set(Object.keys(cfg.services));
  const prom = parse(readFileSync(join(REPO_ROOT, 'prometheus', 'prometheus.yml'), 'utf8')) as {
    global: { scrape_interval: string };
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  };
  assert.equal(prom.global.scrape_interval, '5s');
  const grinder = prom.scrape_configs.find((j) => j.job_name === 'grinder');
  assert.ok(grinder, 'no grinder scrape job');
  // Both replicas, by service name, on the container port.
  assert.deepEqual(grinder.static_configs.flatMap((s) => s.targets).sort(), ['grinder_live_1:9090', 'grinder_live_2:9090']);
  for (const t of grinder.static_configs.flatMap((s) => s.targets)) assert.ok(services.has(t.split(':')[0] ?? ''));
  const am = prom.alerting.alertmanagers.flatMap((a) => a.static_configs.flatMap((s) => s.targets));
  assert.deepEqual(am, ['alertmanager:9093']);

  const ds = parse(readFileSync(join(REPO_ROOT, 'grafana', 'provisioning', 'datasources', 'datasources.yml'), 'utf8')) as {
    datasources: { uid: string; type: string; url: string; jsonData?: { timeInterval?: string } }[];
  };
  const urls = Object.fromEntries(ds.datasources.map((d) => [d.type, d.url]));
  assert.equal(urls.prometheus, 'http://prometheus:9090');
  assert.equal(urls.alertmanager, 'http://alertmanager:9093');
  assert.equal(urls.tempo, 'http://tempo:3200');
  const promDs = ds.datasources.find((d) => d.type === 'prometheus');
  assert.equal(promDs?.jsonData?.timeInterval, prom.global.scrape_interval, 'Grafana timeInterval must equal the scrape interval');

  const tempo = parse(readFileSync(join(REPO_ROOT, 'grafana', 'tempo', 'tempo.yaml'), 'utf8')) as {
    server: { http_listen_port: number };
    distributor: { receivers: { otlp: { protocols: { http: { endpoint: string } } } } };
  };
  assert.equal(tempo.server.http_listen_port, 3200);
  assert.equal(tempo.distributor.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318');
});

test('the Dockerfile: multi-stage, non-root, health-checked, port 9090, node --disable-sigusr1 dist/main.js', () => {
  const df = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const lines = df.split('\n').filter((l) => !l.trim().startsWith('#'));
  const text = lines.join('\n');
  assert.ok((text.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage build');
  assert.match(text, /^ARG NODE_IMAGE=node:24\.\d+\.\d+-alpine/m, 'pinned Node 24 LTS base');
  assert.match(text, /npm ci --no-audit --no-fund\n/);
  assert.match(text, /npm run build/);
  assert.match(text, /npm ci --omit=dev/);
  const users = text.match(/^USER (\S+)/gm) ?? [];
  assert.equal(users.at(-1), 'USER node', 'the runtime stage must run as the unprivileged node user');
  assert.match(text, /^EXPOSE 9090$/m);
  assert.match(text, /^HEALTHCHECK [\s\S]*\/healthz/m);
  const healthcheck = /^HEALTHCHECK (?:.*\\\n)*.*/m.exec(text)?.[0] ?? '';
  assert.match(healthcheck, /CMD wget /, 'the image health check is a BusyBox wget, not a Node process');
  // --disable-sigusr1: no window at start-up in which SIGUSR1 opens the inspector.
  assert.match(text, /^CMD \["node", "--disable-sigusr1", "dist\/main\.js"\]$/m);
  const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
  for (const p of ['node_modules', 'dist', '.git']) assert.ok(ignore.includes(p), `.dockerignore must exclude ${p}`);
  // Everything the build stage copies is present and not ignored.
  for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of (m[1] ?? '').split(/\s+/)) {
      assert.ok(existsSync(join(REPO_ROOT, src)), `Dockerfile copies ${src}, which does not exist`);
      assert.ok(!ignore.includes(src), `Dockerfile copies ${src}, which .dockerignore excludes`);
    }
  }
});
