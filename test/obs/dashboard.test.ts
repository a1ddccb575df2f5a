// The GRINDER Overview dashboard, proven rather than eyeballed:
//  1. the JSON type-checks against @grafana/schema (the Dashboard type, and each panel's options
//     against its panel plugin's Options type), compiled by tsc with no `any`;
//  2. every datasource reference (panels, targets, variables, trace links) names a provisioned uid;
//  3. links come from the configurable constants, every panel honours the cluster variable;
//  4. (in scenarios.test.ts) every panel, variable and annotation query runs against a real
//     Prometheus that scraped real replicas through each failure scenario, and returns data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { headingAnchors } from '../support/markdown';
import { REPO_ROOT } from '../../tools/kit/replica';
import { typeCheck } from '../support/typecheck';

const DASHBOARD_PATH = join(REPO_ROOT, 'grafana', 'dashboards', 'grinder-overview.json');
const DATASOURCES_PATH = join(REPO_ROOT, 'grafana', 'provisioning', 'datasources', 'datasources.yml');
const PROVIDER_PATH = join(REPO_ROOT, 'grafana', 'provisioning', 'dashboards', 'grinder.yml');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface JsonObject {
  [k: string]: Json;
}

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  datasource?: { type: string; uid: string };
}
interface PanelJson {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  options?: JsonObject;
  fieldConfig?: { defaults: { custom?: JsonObject; links?: { url: string }[] } };
  links?: { title: string; url: string }[];
  datasource?: { type: string; uid: string };
}
interface DashboardJson {
  uid: string;
  title: string;
  panels: PanelJson[];
  links?: { url?: string }[];
  templating: { list: { name: string; type: string; allValue?: string; query: { query: string } | string }[] };
}

const raw = readFileSync(DASHBOARD_PATH, 'utf8');
const dashboard = JSON.parse(raw) as DashboardJson;
const provisioned = (parse(readFileSync(DATASOURCES_PATH, 'utf8')) as { datasources: { uid: string; type: string }[] }).datasources;

/** Panel plugin id → the module of @grafana/schema that holds its Options / FieldConfig types. */
const PANEL_TYPES: Record<string, { module: string; fieldConfig: boolean }> = {
  stat: { module: 'stat/panelcfg/x/StatPanelCfg_types.gen', fieldConfig: false },
  'state-timeline': { module: 'statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen', fieldConfig: true },
  timeseries: { module: 'timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen', fieldConfig: true },
};

/**
 * A TypeScript module in which the dashboard JSON, pasted as an object literal, must `satisfies`
 * the schema's types. JSON spells enum members by value ("background", "value"), which TypeScript
 * would only accept through the enum itself, so Json<T> maps every string enum to the union of its
 * values and leaves everything else (structure, optionality, excess-property checks) as is.
 */
function typeCheckSource(dash: DashboardJson, text: string): string {
  const lines = [
    "import type { AnnotationQuery, Dashboard, DataQuery } from '@grafana/schema';",
    ...Object.entries(PANEL_TYPES).map(([type, p], i) => `import type * as P${i} from '@grafana/schema/dist/esm/raw/composable/${p.module}'; // ${type}`),
    'type Json<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;',
    // @grafana/schema has no type for a Prometheus annotation query: Grafana reads expr and
    // interval from its target, the title/text/tag formats from the annotation itself.
    'type PromAnnotation = Omit<AnnotationQuery, "target"> & { target: DataQuery & { expr: string; interval?: string }; titleFormat: string; textFormat?: string; tagKeys?: string; useValueForTime?: boolean };',
    'type Checked = Omit<Dashboard, "annotations"> & { annotations: { list: PromAnnotation[] } };',
    `export const dashboard = (${text}) satisfies Json<Checked>;`,
  ];
  const kinds = Object.keys(PANEL_TYPES);
  for (const p of dash.panels) {
    if (p.type === 'row') continue;
    const i = kinds.indexOf(p.type);
    lines.push(`export const options${p.id} = (${JSON.stringify(p.options ?? {})}) satisfies Json<P${i}.Options>;`);
    const spec = PANEL_TYPES[p.type];
    if (spec?.fieldConfig) {
      lines.push(`export const custom${p.id} = (${JSON.stringify(p.fieldConfig?.defaults.custom ?? {})}) satisfies Json<P${i}.FieldConfig>;`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Compiles `source` with the repo's compiler settings; returns the error messages. */
function compile(source: string, name: string): string[] {
  return typeCheck(source, name).map((d) => `${d.line === null ? '' : `${d.line + 1}:${(d.character ?? 0) + 1} `}${d.message}`);
}

test('the dashboard has the fixed uid and title, and only panel types whose options are type-checked', () => {
  assert.equal(dashboard.uid, 'grinder-overview');
  assert.equal(dashboard.title, 'GRINDER Overview');
  for (const p of dashboard.panels) {
    assert.ok(p.type === 'row' || p.type in PANEL_TYPES, `panel "${p.title}" has type ${p.type}, not covered by the type check`);
  }
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids must be unique');
});

test('the dashboard JSON type-checks against @grafana/schema (and a broken copy does not)', () => {
  const errors = compile(typeCheckSource(dashboard, raw), 'dashboard-typecheck');
  assert.deepEqual(errors, []);

  // The check bites: a misspelt option, a wrong enum value and a wrong type are each reported.
  const broken = JSON.parse(raw) as DashboardJson & { schemaVersion: Json };
  broken.schemaVersion = 'forty-two';
  const stat = broken.panels.find((p) => p.type === 'stat');
  assert.ok(stat?.options);
  stat.options.colourMode = 'background';
  const series = broken.panels.find((p) => p.type === 'timeseries');
  assert.ok(series?.fieldConfig?.defaults.custom);
  series.fieldConfig.defaults.custom.drawStyle = 'zigzag';
  const brokenErrors = compile(typeCheckSource(broken, JSON.stringify(broken)), 'dashboard-typecheck-broken');
  assert.equal(brokenErrors.length, 3, brokenErrors.join('\n'));
  assert.match(brokenErrors.join('\n'), /Type 'string' is not assignable to type 'number'/);
  assert.match(brokenErrors.join('\n'), /colourMode/);
  assert.match(brokenErrors.join('\n'), /zigzag/);
});

test('every datasource reference in the dashboard points at a provisioned datasource', () => {
  const uids = new Map(provisioned.map((d) => [d.uid, d.type]));
  assert.ok(uids.has('grinder-prometheus') && uids.has('grinder-tempo'), 'datasources must be provisioned with fixed uids');
  let refs = 0;
  const walk = (v: Json, path: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'datasource' && x !== null) {
          refs++;
          const uid = typeof x === 'string' ? x : typeof x === 'object' && !Array.isArray(x) ? x.uid : undefined;
          assert.equal(typeof uid, 'string', `${path}.datasource has no uid`);
          assert.ok(uids.has(uid as string), `${path}.datasource uid ${String(uid)} is not provisioned`);
          if (typeof x === 'object' && !Array.isArray(x) && typeof x.type === 'string') {
            assert.equal(x.type, uids.get(uid as string), `${path}.datasource type does not match the provisioned one`);
          }
        }
        walk(x, `${path}.${k}`);
      }
    }
  };
  // Links carry Explore state as URL-encoded JSON: decode them and check their datasources too.
  const linkUrls: string[] = [];
  const collectUrls = (v: Json): void => {
    if (Array.isArray(v)) v.forEach(collectUrls);
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'url' && typeof x === 'string') linkUrls.push(x);
        else collectUrls(x);
      }
    }
  };
  const whole = JSON.parse(raw) as Json;
  walk(whole, 'dashboard');
  collectUrls(whole);
  for (const url of linkUrls.filter((u) => u.startsWith('/explore'))) {
    const panes = new URL(url, 'http://grafana').searchParams.get('panes');
    assert.ok(panes, `explore link without panes: ${url}`);
    walk(JSON.parse(panes) as Json, `link ${url.slice(0, 40)}…`);
  }
  assert.ok(refs > dashboard.panels.length, `only ${refs} datasource references found`);
});

test('panels link to the lease-operation traces in Tempo', () => {
  const tempoLinks = (urls: string[]): string[] =>
    urls.filter((u) => {
      const panes = new URL(u, 'http://grafana').searchParams.get('panes') ?? '';
      return panes.includes('"grinder-tempo"') && panes.includes('grinder.ha.');
    });
  const dashUrls = (dashboard.links ?? []).flatMap((l) => (l.url ? [l.url] : []));
  assert.ok(tempoLinks(dashUrls).length > 0, 'no dashboard link to Tempo');
  for (const title of ['Role of each replica', 'Lock failures by reason', 'Renew latency vs lease TTL']) {
    const p = dashboard.panels.find((x) => x.title === title);
    assert.ok(p, `no panel "${title}"`);
    assert.ok(tempoLinks((p.links ?? []).map((l) => l.url)).length > 0, `"${title}" has no link to Tempo traces`);
  }
});

test('no legend noise: every query names its series, single-series panels hide the legend', () => {
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) {
      assert.ok((t.legendFormat ?? '').trim() !== '' || p.type === 'stat', `"${p.title}" ${t.refId}: no legendFormat`);
    }
    const legend = p.options?.legend;
    if (legend && typeof legend === 'object' && !Array.isArray(legend)) {
      assert.deepEqual(legend.calcs, [], `"${p.title}": legend calcs add noise`);
      if ((p.targets ?? []).length === 1 && !/\{\{/.test(p.targets?.[0]?.legendFormat ?? '')) {
        assert.equal(legend.showLegend, false, `"${p.title}" has one series but shows a legend`);
      }
    }
  }
});

test('the dashboard provider loads grafana/dashboards from where compose mounts it', () => {
  const provider = parse(readFileSync(PROVIDER_PATH, 'utf8')) as { providers: { type: string; options: { path: string } }[] };
  assert.deepEqual(
    provider.providers.map((p) => [p.type, p.options.path]),
    [['file', '/etc/grafana/dashboards']],
  );
});

// Every panel, variable and annotation query runs against a real Prometheus that scraped real
// replicas through every failure scenario in test/obs/scenarios.test.ts (dashboard-queries.ts).

test('the links are built from the configurable constants, which match prometheus.yml and compose', () => {
  const constants = new Map(dashboard.templating.list.filter((v) => v.type === 'constant').map((v) => [v.name, String(v.query)]));
  assert.deepEqual([...constants.keys()].sort(), ['prometheus_url', 'runbook_url']);
  // The README tells operators to change each address everywhere it stands in its variable (one
  // sed): query, current and options must say the same, and the address nowhere else.
  interface ConstantJson {
    name: string;
    type: string;
    query: string;
    current: { text: string; value: string };
    options: { text: string; value: string }[];
  }
  const list = (JSON.parse(raw) as { templating: { list: ConstantJson[] } }).templating.list.filter((v) => v.type === 'constant');
  for (const v of list) {
    assert.deepEqual(
      [v.current.text, v.current.value, ...v.options.flatMap((o) => [o.text, o.value])],
      [v.query, v.query, v.query, v.query],
      `${v.name}: query, current and options differ`,
    );
    assert.equal(raw.split(v.query).length - 1, 5, `${v.name}: the address stands elsewhere in the dashboard too`);
  }
  const prom = parse(readFileSync(join(REPO_ROOT, 'prometheus', 'prometheus.yml'), 'utf8')) as { global: { external_labels: Record<string, string> } };
  assert.equal(constants.get('runbook_url'), prom.global.external_labels.grinder_runbook_url, 'the dashboard and the alerts link the same runbook');
  const compose = readFileSync(join(REPO_ROOT, 'docker-compose.obs.yml'), 'utf8');
  const external = /--web\.external-url=\$\{PROMETHEUS_EXTERNAL_URL:-([^}]+)\}/.exec(compose)?.[1];
  assert.equal(constants.get('prometheus_url'), external, 'prometheus_url is the default --web.external-url of compose');
  const urls: string[] = [];
  const collect = (v: Json): void => {
    if (Array.isArray(v)) v.forEach(collect);
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'url' && typeof x === 'string') urls.push(x);
        else collect(x);
      }
    }
  };
  collect(JSON.parse(raw) as Json);
  for (const u of urls) {
    assert.ok(u.startsWith('/explore?') || u.startsWith('${runbook_url}') || u.startsWith('${prometheus_url}'), `link not built from a constant: ${u}`);
  }
  assert.ok(!raw.includes('localhost:9092/'), 'no hard-coded Prometheus address in a link');
  // Every runbook anchor a panel links to exists.
  const anchors = headingAnchors(readFileSync(join(REPO_ROOT, 'docs', 'runbooks', 'ha-operations.md'), 'utf8'));
  for (const u of urls.filter((x) => x.startsWith('${runbook_url}#'))) assert.ok(anchors.has(u.split('#')[1] ?? ''), `runbook has no #${u.split('#')[1]}`);
});

test('a cluster variable filters every panel query; role changes are annotated', () => {
  const cluster = dashboard.templating.list.find((v) => v.name === 'cluster');
  assert.ok(cluster, 'no cluster variable');
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) {
      if (/grinder[_:]/.test(t.expr)) assert.match(t.expr, /\$cluster/, `"${p.title}" ${t.refId} ignores the cluster variable`);
    }
  }
  const annotations = (JSON.parse(raw) as { annotations: { list: { name: string; target?: { expr?: string } }[] } }).annotations.list;
  assert.ok(
    annotations.some((a) => /grinder_ha_is_leader/.test(a.target?.expr ?? '') && /\$cluster/.test(a.target?.expr ?? '')),
    'no role-change annotation',
  );
});
