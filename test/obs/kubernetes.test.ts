// deploy/kubernetes/, checked offline (no cluster, no kubectl):
//  1. every document validates against its schema: kubernetes-models for the Kubernetes kinds,
//     @kubernetes-models/prometheus-operator for ServiceMonitor and PrometheusRule; a kind neither
//     knows fails. Their validators accept fields they do not know, which the API server (kubectl's
//     strict field validation) refuses, so the documents also type-check against the same
//     packages' types, where a misspelt field is an excess property;
//  2. the PrometheusRule is what scripts/gen-prometheusrule.mjs makes from the shipped rules now,
//     and promtool accepts its groups;
//  3. the promises the manifests make, read back from them: which pods each selector picks, the
//     probes, the settings (validated by the service's own loadConfig), the stop grace, the init
//     Job, the Redis persistence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment' with { 'resolution-mode': 'import' };
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet' with { 'resolution-mode': 'import' };
import type { IJob } from 'kubernetes-models/batch/v1/Job' with { 'resolution-mode': 'import' };
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap' with { 'resolution-mode': 'import' };
import type { IService } from 'kubernetes-models/v1/Service' with { 'resolution-mode': 'import' };
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget' with { 'resolution-mode': 'import' };
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor' with { 'resolution-mode': 'import' };
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule' with { 'resolution-mode': 'import' };
import { loadConfig } from '../../src/config';
import { SETTINGS } from '../../src/usage';
import { shutdownDeadlineMs } from '../../src/watchdog';
import { REPO_ROOT } from '../../tools/kit/replica';
import { typeCheck } from '../support/typecheck';

const K8S_DIR = join(REPO_ROOT, 'deploy', 'kubernetes');
const RULE_FILE = join(REPO_ROOT, 'prometheus', 'rules', 'grinder-ha.yml');
const GENERATOR = join(REPO_ROOT, 'scripts', 'gen-prometheusrule.mjs');

type PodTemplate = NonNullable<IDeployment['spec']>['template'];
type PodSpec = NonNullable<PodTemplate['spec']>;
type Container = PodSpec['containers'][number];
type EnvVar = NonNullable<Container['env']>[number];
type LabelSelector = NonNullable<IDeployment['spec']>['selector'];

interface Meta {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: string; labels?: Record<string, string> };
}
interface Manifest {
  /** Path under deploy/kubernetes/ and the document's place in that file (from 1). */
  where: string;
  file: string;
  doc: Meta & Record<string, unknown>;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return yamlFiles(p);
      return /\.ya?ml$/.test(name) ? [p] : [];
    });
}

function load(): Manifest[] {
  const out: Manifest[] = [];
  for (const path of yamlFiles(K8S_DIR)) {
    const file = relative(K8S_DIR, path);
    parseAllDocuments(readFileSync(path, 'utf8')).forEach((d, i) => {
      assert.deepEqual(d.errors, [], `${file} document ${i + 1} is not valid YAML`);
      const doc: unknown = d.toJS();
      // An empty document (a trailing ---) creates nothing.
      if (doc === null) return;
      assert.ok(typeof doc === 'object' && !Array.isArray(doc), `${file} document ${i + 1} is not a mapping`);
      out.push({ where: `${file}#${i + 1}`, file, doc: doc as Manifest['doc'] });
    });
  }
  return out;
}

const MANIFESTS = load();
/** Kubernetes objects: everything but kustomize's own file. */
const OBJECTS = MANIFESTS.filter((m) => m.doc.kind !== 'Kustomization');

function all<T>(kind: string): T[] {
  return OBJECTS.filter((m) => m.doc.kind === kind).map((m) => m.doc as T);
}

function one<T extends Meta>(kind: string, name?: string): T {
  const found = all<T>(kind).filter((d) => name === undefined || d.metadata?.name === name);
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` named ${name}` : ''} under deploy/kubernetes/, found ${found.length}`);
  return found[0] as T;
}

function podSpec(template: PodTemplate | undefined, what: string): PodSpec {
  assert.ok(template?.spec, `${what} has no pod template spec`);
  return template.spec;
}

function container(spec: PodSpec, name: string, what: string): Container {
  const c = spec.containers.find((x) => x.name === name);
  assert.ok(c, `${what} has no container ${name}; has: ${spec.containers.map((x) => x.name).join(', ')}`);
  return c;
}

const deployment = (): IDeployment => one<IDeployment>('Deployment', 'grinder');
const replicaPod = (): PodSpec => podSpec(deployment().spec?.template, 'Deployment grinder');
const replica = (): Container => container(replicaPod(), 'grinder', 'Deployment grinder');
const initJob = (): IJob => one<IJob>('Job', 'grinder-init');
const initPod = (): PodSpec => podSpec(initJob().spec?.template, 'Job grinder-init');
const initContainer = (): Container => container(initPod(), 'init', 'Job grinder-init');
const redis = (): IStatefulSet => one<IStatefulSet>('StatefulSet', 'grinder-redis');
const redisContainer = (): Container => container(podSpec(redis().spec?.template, 'StatefulSet grinder-redis'), 'redis', 'StatefulSet grinder-redis');

// ---------------------------------------------------------------------------------------------
// Schemas

interface Model {
  validate(): void;
}
type ModelClass = (new (data: object) => Model) & { apiVersion: string; kind: string };

/** The module of kubernetes-models (or its prometheus-operator companion) for an apiVersion. */
function modelModule(apiVersion: string): string {
  return apiVersion.startsWith('monitoring.coreos.com/') ? `@kubernetes-models/prometheus-operator/${apiVersion}` : `kubernetes-models/${apiVersion}`;
}

/** The model class for a document, or why there is none. */
async function modelFor(apiVersion: unknown, kind: unknown): Promise<ModelClass | string> {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return 'it has no apiVersion and kind';
  let mod: Record<string, unknown>;
  try {
    // Both packages are ES modules only: a CommonJS test reaches them through import().
    mod = (await import(modelModule(apiVersion))) as Record<string, unknown>;
  } catch {
    return `no schema for apiVersion ${apiVersion} (kubernetes-models, @kubernetes-models/prometheus-operator)`;
  }
  const cls = mod[kind];
  if (typeof cls !== 'function' || !('kind' in cls) || cls.kind !== kind) {
    return `no schema for kind ${kind} in ${apiVersion}: add its models package to the test, or fix the kind`;
  }
  return cls as ModelClass;
}

async function schemaErrors(doc: Manifest['doc']): Promise<string | undefined> {
  const cls = await modelFor(doc.apiVersion, doc.kind);
  if (typeof cls === 'string') return cls;
  try {
    new cls(doc).validate();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

test('every document under deploy/kubernetes/ validates against its schema (and a broken one does not)', async () => {
  assert.ok(OBJECTS.length >= 9, `only ${OBJECTS.length} documents under deploy/kubernetes/`);
  const failures: string[] = [];
  for (const m of OBJECTS) {
    const err = await schemaErrors(m.doc);
    if (err !== undefined) failures.push(`${m.where} (${String(m.doc.kind)} ${m.doc.metadata?.name ?? '?'}): ${err}`);
  }
  assert.deepEqual(failures, []);

  // The check bites: a wrong type deep in the pod spec, a bad duration, an unknown kind.
  const broken = structuredClone(deployment()) as IDeployment & Manifest['doc'];
  const c = broken.spec?.template.spec?.containers[0];
  assert.ok(c?.ports?.[0]);
  (c.ports[0] as { containerPort: unknown }).containerPort = 'http';
  assert.match((await schemaErrors(broken)) ?? '', /containerPort must be integer/);
  const monitor = structuredClone(one<IServiceMonitor>('ServiceMonitor')) as IServiceMonitor & Manifest['doc'];
  assert.ok(monitor.spec.endpoints?.[0]);
  monitor.spec.endpoints[0].interval = 'five seconds';
  assert.match((await schemaErrors(monitor)) ?? '', /interval must match pattern/);
  assert.match((await schemaErrors({ apiVersion: 'apps/v1', kind: 'Deploymnet' })) ?? '', /no schema for kind Deploymnet/);
  assert.match((await schemaErrors({ apiVersion: 'example.com/v1', kind: 'Widget' })) ?? '', /no schema for apiVersion example\.com\/v1/);
});

/** One line per document: the document as an object literal that must satisfy its package's type. */
function strictSource(docs: Manifest[]): { source: string; lineOf: string[] } {
  const lines: string[] = [];
  const lineOf: string[] = [];
  docs.forEach((m, i) => {
    const kind = String(m.doc.kind);
    lines.push(`import type { I${kind} as T${i} } from '${modelModule(String(m.doc.apiVersion))}/${kind}' with { 'resolution-mode': 'import' };`);
    lineOf.push(m.where);
  });
  docs.forEach((m, i) => {
    lines.push(`export const doc${i} = (${JSON.stringify(m.doc)}) satisfies T${i};`);
    lineOf.push(m.where);
  });
  return { source: `${lines.join('\n')}\n`, lineOf };
}

/** Compiles `source` with the repo's compiler settings; returns the errors as "where: message". */
function compile(source: string, lineOf: string[]): string[] {
  return typeCheck(source, 'kubernetes-typecheck').map((d) => {
    const where = d.line === null ? 'the generated check' : (lineOf[d.line] ?? `line ${d.line + 1}`);
    return `${where}: ${d.message}`;
  });
}

test('no document has a field its schema does not know (and a misspelt one is caught)', () => {
  const { source, lineOf } = strictSource(OBJECTS);
  assert.deepEqual(compile(source, lineOf), []);

  const broken = structuredClone(deployment()) as IDeployment & Record<string, unknown>;
  const c = broken.spec?.template.spec?.containers[0] as (Container & Record<string, unknown>) | undefined;
  assert.ok(c);
  c.livenesProbe = c.livenessProbe;
  delete c.livenessProbe;
  const check = strictSource([{ where: 'broken', file: 'broken', doc: broken as Manifest['doc'] }]);
  const errors = compile(check.source, check.lineOf);
  assert.ok(
    errors.some((e) => e.startsWith('broken: ') && /livenesProbe\W* does not exist/.test(e)),
    `a misspelt field was not reported: ${errors.join('; ')}`,
  );
});

test('kustomization.yaml lists every other manifest exactly once', () => {
  const k = MANIFESTS.filter((m) => m.doc.kind === 'Kustomization');
  assert.equal(k.length, 1, 'one kustomization.yaml');
  const listed = (k[0]?.doc.resources ?? []) as string[];
  const files = [...new Set(OBJECTS.map((m) => m.file))].sort();
  assert.deepEqual([...listed].sort(), files, 'kustomization.yaml resources must be exactly the manifest files');
  assert.equal(new Set(listed).size, listed.length, 'a file listed twice');
  assert.deepEqual(all('Secret'), [], 'no Secret in git: the README has the Secret created by hand (a password in git is a leaked password)');
});

// ---------------------------------------------------------------------------------------------
// The PrometheusRule

test('the committed PrometheusRule is what scripts/gen-prometheusrule.mjs makes from the shipped rules now', () => {
  const r = spawnSync(process.execPath, [GENERATOR, '--stdout'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `the generator failed: ${r.stderr}`);
  const committed = readFileSync(join(K8S_DIR, 'prometheusrule.yaml'), 'utf8');
  assert.ok(committed === r.stdout, 'deploy/kubernetes/prometheusrule.yaml is out of date with prometheus/rules/grinder-ha.yml: run `npm run gen:k8s`');
  assert.match(committed, /^# generated by scripts\/gen-prometheusrule\.mjs from prometheus\/rules\/grinder-ha\.yml; do not edit$/m);

  // The same rules, only with the link bases written in (the operator's Prometheus need not set them).
  const rule = one<IPrometheusRule>('PrometheusRule');
  const shipped = parse(readFileSync(RULE_FILE, 'utf8')) as { groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[] };
  const names = (groups: { rules?: { alert?: string; record?: string }[] }[]): string[] =>
    groups.flatMap((g) => (g.rules ?? []).map((x) => x.alert ?? x.record ?? '?'));
  assert.deepEqual(names(rule.spec.groups ?? []), names(shipped.groups));
  assert.deepEqual(
    (rule.spec.groups ?? []).flatMap((g) => g.rules?.map((x) => String(x.expr)) ?? []),
    shipped.groups.flatMap((g) => g.rules.map((x) => x.expr)),
  );
  assert.doesNotMatch(committed, /\$externalLabels/, 'every external label is written in');
  const prom = parse(readFileSync(join(REPO_ROOT, 'prometheus', 'prometheus.yml'), 'utf8')) as { global: { external_labels: Record<string, string> } };
  const runbook = prom.global.external_labels.grinder_runbook_url;
  for (const alert of (rule.spec.groups ?? []).flatMap((g) => g.rules ?? []).filter((x) => x.alert !== undefined)) {
    assert.ok(
      alert.annotations?.runbook_url?.startsWith(`${runbook}#`),
      `${alert.alert}: runbook_url ${alert.annotations?.runbook_url} does not start with ${runbook}#`,
    );
  }
});

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
test("promtool check rules: the PrometheusRule's groups", { skip: promtool.error ? 'promtool is not on PATH (apt-get install prometheus)' : false }, () => {
  const rule = one<IPrometheusRule>('PrometheusRule');
  const dir = join(REPO_ROOT, '.tmp');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `kubernetes-prometheusrule-${process.pid}.yml`);
  writeFileSync(file, JSON.stringify({ groups: rule.spec.groups }));
  try {
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(r.status, 0, out);
    assert.doesNotMatch(out, /WARNING/);
    const count = (rule.spec.groups ?? []).reduce((n, g) => n + (g.rules?.length ?? 0), 0);
    assert.match(out, new RegExp(`SUCCESS: ${count} rules found`), out);
  } finally {
    rmSync(file, { force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Selectors, probes, settings

function selects(selector: LabelSelector | Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (selector === undefined) return false;
  const have = labels ?? {};
  const sel: LabelSelector =
    'matchLabels' in selector || 'matchExpressions' in selector ? (selector as LabelSelector) : { matchLabels: selector as Record<string, string> };
  const byLabel = Object.entries(sel.matchLabels ?? {}).every(([k, v]) => have[k] === v);
  const byExpr = (sel.matchExpressions ?? []).every((e) => {
    const v = have[e.key];
    switch (e.operator) {
      case 'In':
        return v !== undefined && (e.values ?? []).includes(v);
      case 'NotIn':
        return v === undefined || !(e.values ?? []).includes(v);
      case 'Exists':
        return v !== undefined;
      case 'DoesNotExist':
        return v === undefined;
      default:
        throw new Error(`selector operator ${e.operator} is not one Kubernetes knows (In, NotIn, Exists, DoesNotExist)`);
    }
  });
  // An empty selector selects everything in a Service, nothing in a Deployment: never wanted here.
  return byLabel && byExpr && (Object.keys(sel.matchLabels ?? {}).length > 0 || (sel.matchExpressions ?? []).length > 0);
}

/** Every pod template in the directory, by its owner. */
function podTemplates(): { owner: string; labels: Record<string, string> }[] {
  return [
    ...all<IDeployment>('Deployment').map((d) => ({ owner: `Deployment ${d.metadata?.name}`, labels: d.spec?.template.metadata?.labels ?? {} })),
    ...all<IStatefulSet>('StatefulSet').map((d) => ({ owner: `StatefulSet ${d.metadata?.name}`, labels: d.spec?.template.metadata?.labels ?? {} })),
    ...all<IJob>('Job').map((d) => ({ owner: `Job ${d.metadata?.name}`, labels: d.spec?.template.metadata?.labels ?? {} })),
  ];
}

function selected(selector: LabelSelector | Record<string, string> | undefined): string[] {
  return podTemplates()
    .filter((p) => selects(selector, p.labels))
    .map((p) => p.owner);
}

test('the Deployment, its Service and its PodDisruptionBudget select exactly the replica pods; Redis its own', () => {
  const d = deployment();
  assert.deepEqual(selected(d.spec?.selector), ['Deployment grinder'], 'Deployment selector');
  assert.deepEqual(selected(one<IService>('Service', 'grinder').spec?.selector), ['Deployment grinder'], 'Service grinder selector');
  assert.deepEqual(selected(one<IPodDisruptionBudget>('PodDisruptionBudget').spec?.selector), ['Deployment grinder'], 'PodDisruptionBudget selector');
  const anti = d.spec?.template.spec?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
  assert.equal(anti.length, 1, 'one required anti-affinity term');
  assert.equal(anti[0]?.topologyKey, 'kubernetes.io/hostname');
  assert.deepEqual(selected(anti[0]?.labelSelector), ['Deployment grinder'], 'anti-affinity must keep the replicas apart, and only them');
  assert.deepEqual(selected(redis().spec?.selector), ['StatefulSet grinder-redis'], 'StatefulSet selector');
  assert.deepEqual(selected(one<IService>('Service', 'grinder-redis').spec?.selector), ['StatefulSet grinder-redis'], 'Service grinder-redis selector');
});

test('two replicas on two nodes, replaced one at a time, at most one taken by a drain', () => {
  const d = deployment();
  assert.equal(d.spec?.replicas, 2);
  // Required anti-affinity leaves a surge pod no node on a two-node cluster: replace, do not surge.
  assert.deepEqual(d.spec?.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
  const pdb = one<IPodDisruptionBudget>('PodDisruptionBudget');
  assert.equal(pdb.spec?.maxUnavailable, 1);
  assert.equal(pdb.spec?.minAvailable, undefined, 'maxUnavailable or minAvailable, not both');
});

test('the ServiceMonitor scrapes the Service by a port it has, as the job the rules select, at the interval of prometheus.yml', () => {
  const sm = one<IServiceMonitor>('ServiceMonitor');
  const services = all<IService>('Service').filter((s) => selects(sm.spec.selector, s.metadata?.labels));
  assert.deepEqual(
    services.map((s) => s.metadata?.name),
    ['grinder'],
    'the ServiceMonitor must select the Service grinder by its labels, and nothing else',
  );
  const svc = services[0] as IService;
  const ports = (svc.spec?.ports ?? []).map((p) => p.name);
  for (const e of sm.spec.endpoints ?? [])
    assert.ok(e.port !== undefined && ports.includes(e.port), `endpoint port ${e.port} is not a port name of Service grinder (${ports.join(', ')})`);
  assert.equal(sm.spec.endpoints?.length, 1);

  // prometheus-operator names the job after the Service, or after the Service label jobLabel names.
  const job = sm.spec.jobLabel !== undefined ? svc.metadata?.labels?.[sm.spec.jobLabel] : svc.metadata?.name;
  const ruleJobs = new Set([...readFileSync(RULE_FILE, 'utf8').matchAll(/\bjob="([^"]+)"/g)].map((m) => m[1]));
  assert.deepEqual([...ruleJobs], ['grinder'], 'the rules select one job');
  assert.equal(job, 'grinder', 'the scrape job must be the one the rules select, or every alert goes blind');

  const prom = parse(readFileSync(join(REPO_ROOT, 'prometheus', 'prometheus.yml'), 'utf8')) as { global: { scrape_interval: string; scrape_timeout: string } };
  assert.equal(sm.spec.endpoints?.[0]?.interval, prom.global.scrape_interval, 'the rules and dashboard assume the interval of prometheus.yml');
  assert.equal(sm.spec.endpoints?.[0]?.scrapeTimeout, prom.global.scrape_timeout);
  assert.equal(sm.spec.endpoints?.[0]?.path ?? '/metrics', '/metrics');

  // The Service's port reaches the container's.
  const target = svc.spec?.ports?.[0]?.targetPort;
  assert.ok(
    (replica().ports ?? []).some((p) => p.name === target || p.containerPort === target),
    `Service targetPort ${target} is no port of the container`,
  );
});

function probePath(c: Container, kind: 'livenessProbe' | 'readinessProbe' | 'startupProbe'): string | undefined {
  const probe = c[kind];
  if (probe === undefined) return undefined;
  const port = probe.httpGet?.port;
  assert.ok(
    (c.ports ?? []).some((p) => p.name === port || p.containerPort === port),
    `${kind} port ${String(port)} is not a port of container ${c.name}`,
  );
  return probe.httpGet?.path;
}

test('liveness is /healthz; readiness is not /readyz (a STANDBY would never be Ready)', () => {
  const c = replica();
  assert.equal(probePath(c, 'livenessProbe'), '/healthz');
  const readiness = probePath(c, 'readinessProbe');
  assert.ok(readiness !== undefined, 'a readiness probe, or a pod is Ready before it listens');
  assert.notEqual(readiness, '/readyz', 'readiness on /readyz leaves the STANDBY un-Ready: rollouts and drains stall');
  assert.equal(readiness, '/healthz');
  assert.notEqual(probePath(c, 'startupProbe'), '/readyz');
});

const SAMPLE_FIELDS: Record<string, string> = {
  'metadata.name': 'grinder-5d8f7c9b4-x2x7q',
  'metadata.namespace': 'grinder',
  'status.podIP': '10.244.1.7',
};
const SAMPLE_SECRET: Record<string, string> = { url: 'redis://:s3cret@grinder-redis:6379/0', password: 's3cret' };

/** The container's environment as the kubelet builds it: envFrom first, then env with $(VAR) expanded. */
function environment(c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const name = from.configMapRef?.name;
    assert.ok(name !== undefined, `container ${c.name}: only ConfigMaps in envFrom (a Secret's keys would all become settings)`);
    Object.assign(env, one<IConfigMap>('ConfigMap', name).data ?? {});
  }
  for (const e of c.env ?? []) env[e.name] = envValue(c, e, env);
  return env;
}

function envValue(c: Container, e: EnvVar, defined: Record<string, string>): string {
  if (e.value !== undefined) {
    return e.value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_whole: string, name: string | undefined) => {
      if (name === undefined) return '$';
      const v = defined[name];
      assert.ok(v !== undefined, `container ${c.name}: ${e.name} refers to $(${name}), which is not defined before it (Kubernetes would pass it on literally)`);
      return v;
    });
  }
  const field = e.valueFrom?.fieldRef?.fieldPath;
  if (field !== undefined) {
    const v = SAMPLE_FIELDS[field];
    assert.ok(v !== undefined, `container ${c.name}: ${e.name} from field ${field}, which this test has no sample of`);
    return v;
  }
  const key = e.valueFrom?.secretKeyRef?.key;
  if (key !== undefined) {
    const v = SAMPLE_SECRET[key];
    assert.ok(v !== undefined, `container ${c.name}: ${e.name} from Secret key ${key}, which the README's Secret does not have`);
    return v;
  }
  assert.fail(`container ${c.name}: ${e.name} has neither a value, a fieldRef nor a secretKeyRef`);
}

const KNOWN_SETTINGS = new Set([...SETTINGS.map((s) => s.name), 'GRINDER_ADVERTISE_URL']);

test('settings: every GRINDER_* name is a setting, the Redis URL comes from a Secret, and the service accepts them all', () => {
  for (const [what, c, pod] of [
    ['Deployment grinder', replica(), replicaPod()],
    ['Job grinder-init', initContainer(), initPod()],
  ] as const) {
    const env = environment(c);
    const unknown = Object.keys(env).filter((n) => n.startsWith('GRINDER_') && !KNOWN_SETTINGS.has(n));
    assert.deepEqual(unknown, [], `${what}: not settings (src/usage.ts SETTINGS)`);
    // The service links Kubernetes adds would be GRINDER_PORT, GRINDER_REDIS_PORT=tcp://…
    assert.equal(pod.enableServiceLinks, false, `${what}: enableServiceLinks must be false`);

    const url = (c.env ?? []).find((e) => e.name === 'GRINDER_REDIS_URL');
    assert.equal(url?.valueFrom?.secretKeyRef?.name, 'grinder-redis', `${what}: GRINDER_REDIS_URL must come from the Secret grinder-redis`);
    assert.equal(url?.value, undefined);
    for (const cm of all<IConfigMap>('ConfigMap')) {
      for (const [k, v] of Object.entries(cm.data ?? {})) {
        assert.doesNotMatch(`${k}=${v}`, /REDIS_URL|rediss?(\+\w+)?:\/\//, `ConfigMap ${cm.metadata?.name}: a Redis URL belongs in the Secret`);
      }
    }

    // What loadConfig refuses, the container would exit 2 on.
    const config = loadConfig(env);
    assert.equal(config.haEnabled, true, `${what}: HA mode`);
  }
  const config = loadConfig(environment(replica()));
  const port = (replica().ports ?? []).find((p) => p.name === 'http')?.containerPort;
  assert.equal(config.metricsPort, port, 'GRINDER_METRICS_PORT must be the containerPort named http');
  assert.equal(new URL(config.advertiseUrl).port, String(port), 'GRINDER_ADVERTISE_URL must name the HTTP port');
  assert.equal(new URL(config.advertiseUrl).hostname, SAMPLE_FIELDS['status.podIP'], 'GRINDER_ADVERTISE_URL must be the pod IP');
  assert.equal(config.instanceId, SAMPLE_FIELDS['metadata.name'], 'GRINDER_INSTANCE_ID must be the pod name');
});

test("the stop grace period exceeds the service's own shutdown bound", () => {
  const config = loadConfig(environment(replica()));
  const boundMs = shutdownDeadlineMs(config);
  const graceS = replicaPod().terminationGracePeriodSeconds ?? 30;
  assert.ok(
    graceS * 1000 > boundMs,
    `terminationGracePeriodSeconds ${graceS} s must exceed the shutdown bound ${boundMs} ms, or the kubelet kills a leader that is releasing its lease`,
  );
});

test("the init Job runs `grinder init` once, with the replicas' settings", () => {
  const job = initJob();
  const dockerCmd = /^CMD (\[.*\])$/m.exec(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'))?.[1];
  assert.ok(dockerCmd, 'the Dockerfile has an exec-form CMD');
  assert.deepEqual(initContainer().command, [...(JSON.parse(dockerCmd) as string[]), 'init'], "the image's CMD with init appended");
  assert.equal(initPod().restartPolicy, 'Never');
  // Once: a Job deleted after it finished would be recreated, and run again, by the next apply.
  assert.equal(job.spec?.ttlSecondsAfterFinished, undefined, 'no ttlSecondsAfterFinished: the completed Job must stay');
  assert.ok((job.spec?.backoffLimit ?? 6) > 0, 'retries while Redis starts');
  // Not an initContainer of the replicas (it would run at every pod start; init-job.yaml says why).
  assert.deepEqual(replicaPod().initContainers ?? [], []);

  // The same ConfigMap and Secret, and the same value for every setting both set.
  assert.deepEqual(initContainer().envFrom, replica().envFrom);
  const jobEnv = environment(initContainer());
  const replicaEnv = environment(replica());
  const perPod = new Set(['GRINDER_INSTANCE_ID', 'GRINDER_ADVERTISE_URL', 'POD_IP']);
  for (const name of Object.keys(replicaEnv).filter((n) => !perPod.has(n))) {
    assert.equal(jobEnv[name], replicaEnv[name], `${name}: the Job must see what the replicas see`);
  }
  // The same image, though not necessarily the same tag: a completed Job keeps the one it ran with.
  for (const c of [initContainer(), replica()]) assert.match(c.image ?? '', /^grinder-ha:/, `container ${c.name} runs ${c.image}`);
});

test('Redis persists every write before answering, never evicts, and keeps its data on a volume', () => {
  const c = redisContainer();
  const args = [...(c.command ?? []), ...(c.args ?? [])].join(' ');
  assert.match(args, /--appendonly yes\b/);
  assert.match(args, /--appendfsync always\b/);
  assert.match(args, /--maxmemory-policy noeviction\b/);
  assert.doesNotMatch(args, /--maxmemory \d/, 'with noeviction a full Redis refuses the lease writes: no maxmemory');
  const claims = (redis().spec?.volumeClaimTemplates ?? []).map((v) => v.metadata?.name);
  const data = (c.volumeMounts ?? []).find((v) => v.mountPath === '/data');
  assert.ok(data && claims.includes(data.name), `/data must be a volumeClaimTemplate (${claims.join(', ')})`);
  assert.equal(redis().spec?.replicas, 1, 'one Redis: a second one would be a second, independent lease');
  // The password the replicas' URL carries.
  assert.match(args, /--requirepass \$\(REDISCLI_AUTH\)/);
  const auth = (c.env ?? []).find((e) => e.name === 'REDISCLI_AUTH');
  assert.equal(auth?.valueFrom?.secretKeyRef?.name, 'grinder-redis');
  assert.equal(auth?.valueFrom?.secretKeyRef?.key, 'password');
});
