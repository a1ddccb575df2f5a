// The shipped Prometheus and Alertmanager configuration, checked by the tools CI runs
// (promtool 2.42 and amtool from Debian), plus the promises the alert rules make to operators:
// every alert carries severity, summary, description, a runbook_url whose anchor exists in the
// runbook, and the dashboard uid of the shipped dashboard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { headingAnchors } from '../support/markdown';
import { REPO_ROOT } from '../../tools/kit/replica';
import { parseDurationMs } from '../../tools/kit/prometheus';

const PROM_DIR = join(REPO_ROOT, 'prometheus');
const RULES_DIR = join(PROM_DIR, 'rules');
const RULE_FILES = readdirSync(RULES_DIR)
  .filter((f) => f.endsWith('.yml'))
  .map((f) => join(RULES_DIR, f));
const RUNBOOK = join(REPO_ROOT, 'docs', 'runbooks', 'ha-operations.md');
const DASHBOARD = join(REPO_ROOT, 'grafana', 'dashboards', 'grinder-overview.json');

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.error) throw new Error(`could not run ${cmd}: ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RecordingRule {
  record: string;
  expr: string;
}
interface RuleFile {
  groups: { name: string; interval?: string; rules: (AlertRule | RecordingRule)[] }[];
}

function alertRules(): AlertRule[] {
  return RULE_FILES.flatMap((f) => (parse(readFileSync(f, 'utf8')) as RuleFile).groups)
    .flatMap((g) => g.rules)
    .filter((r): r is AlertRule => 'alert' in r);
}

test('there are rule files to check', () => {
  assert.ok(RULE_FILES.length > 0, 'no prometheus/rules/*.yml');
});

test('promtool check config: prometheus.yml with its rule files resolved', () => {
  const r = run('promtool', ['check', 'config', join(PROM_DIR, 'prometheus.yml')]);
  assert.equal(r.status, 0, r.out);
  // The rule_files glob must actually find the shipped rules (a wrong path finds 0 and passes).
  assert.match(r.out, new RegExp(`SUCCESS: ${RULE_FILES.length} rule files found`), r.out);
  for (const f of RULE_FILES) assert.ok(r.out.includes(`Checking ${f}`), `${f} not checked:\n${r.out}`);
});

test('promtool check rules: every rule file', () => {
  const r = run('promtool', ['check', 'rules', ...RULE_FILES]);
  assert.equal(r.status, 0, r.out);
  assert.doesNotMatch(r.out, /WARNING/);
});

test('promtool test rules: firing and not-firing cases for every alert', () => {
  const tests = readdirSync(join(PROM_DIR, 'tests'))
    .filter((f) => f.endsWith('.test.yml'))
    .map((f) => join(PROM_DIR, 'tests', f));
  assert.ok(tests.length > 0, 'no prometheus/tests/*.test.yml');
  const r = run('promtool', ['test', 'rules', ...tests]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS/);

  // Every alert appears in at least one case that expects it to fire and one that expects it not to.
  interface AlertCase {
    alertname: string;
    exp_alerts?: unknown[];
  }
  const cases = tests
    .flatMap((f) => (parse(readFileSync(f, 'utf8')) as { tests: { name: string; alert_rule_test?: AlertCase[] }[] }).tests)
    .flatMap((t) => t.alert_rule_test ?? []);
  for (const rule of alertRules()) {
    const mine = cases.filter((c) => c.alertname === rule.alert);
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${rule.alert}: no firing case`,
    );
    // The heartbeat fires always by design; a "silent" case for it could not exist.
    if (rule.alert === WATCHDOG) continue;
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${rule.alert}: no not-firing case`,
    );
  }
  const names = tests.flatMap((f) => (parse(readFileSync(f, 'utf8')) as { tests: { name: string }[] }).tests.map((t) => t.name));
  for (const must of ['a crash failover pages nobody', 'a 6 s Redis restart pages nobody', 'steady state pages nobody']) {
    assert.ok(names.includes(must), `the "${must}" case is missing`);
  }
});

test('amtool check-config: alertmanager.yml', () => {
  const r = run('amtool', ['check-config', join(REPO_ROOT, 'alertmanager', 'alertmanager.yml')]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

const WATCHDOG = 'GrinderWatchdog';

const ALERTS = [
  'GrinderHABothStandby',
  'GrinderHAFencedWritesRejected',
  'GrinderHAFlapping',
  'GrinderHALeaderIdle',
  'GrinderHALeaderNotRenewing',
  'GrinderHALiveWritesFailing',
  'GrinderHALockFailuresRising',
  'GrinderHANoHealthyStandby',
  'GrinderHARedisDataLost',
  'GrinderHARedisEvictionPolicy',
  'GrinderHARedisUnreachable',
  'GrinderHARenewLatencyNearTTL',
  'GrinderHAReplicaCrashLooping',
  'GrinderHAReplicaDown',
  'GrinderHASplitBrain',
  'GrinderHATargetMissing',
  'GrinderPrometheusNotificationsFailing',
  'GrinderPrometheusRuleFailures',
  WATCHDOG,
];

test('every alert exists with severity, summary, description, absolute runbook and dashboard links', () => {
  const rules = alertRules();
  assert.deepEqual(rules.map((r) => r.alert).sort(), [...ALERTS].sort());
  const runbook = readFileSync(RUNBOOK, 'utf8');
  const anchors = headingAnchors(runbook);
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string };
  for (const r of rules) {
    assert.match(r.labels?.severity ?? '', r.alert === WATCHDOG ? /^none$/ : /^(critical|warning)$/, `${r.alert} severity`);
    for (const k of ['summary', 'description', 'runbook_url', 'dashboard_url', 'dashboard_uid']) {
      assert.ok((r.annotations?.[k] ?? '').trim() !== '', `${r.alert} lacks annotation ${k}`);
    }
    // Absolute links, from the external labels prometheus.yml sets (checked below).
    const [base, anchor] = (r.annotations?.runbook_url ?? '').split('#');
    assert.equal(base, '{{ $externalLabels.grinder_runbook_url }}', `${r.alert} runbook_url must be built from the external label`);
    assert.equal(anchor, r.alert.toLowerCase(), `${r.alert}: anchor should be the alert name`);
    assert.ok(anchor && anchors.has(anchor), `${r.alert}: runbook has no heading with anchor #${anchor}`);
    assert.ok((r.annotations?.dashboard_url ?? '').startsWith(`{{ $externalLabels.grinder_grafana_url }}/d/${dashboard.uid}`), `${r.alert}: dashboard_url`);
    assert.equal(r.annotations?.dashboard_uid, dashboard.uid, `${r.alert}: dashboard_uid`);
    // Every `for:` is a whole number of 5 s evaluations (the shipped evaluation interval).
    if (r.for !== undefined) assert.equal(parseDurationMs(r.for) % 5_000, 0, `${r.alert} for: ${r.for}`);
    // Per cluster: every GRINDER HA alert keeps grinder_cluster (by name in the expression).
    if (r.alert.startsWith('GrinderHA')) assert.match(r.expr, /grinder_cluster|grinder:/, `${r.alert} is not scoped by cluster`);
  }
  // Critical means leader work stopped (or two leaders), or the alerts themselves are blind.
  assert.deepEqual(
    rules
      .filter((r) => r.labels?.severity === 'critical')
      .map((r) => r.alert)
      .sort(),
    ['GrinderHABothStandby', 'GrinderHALeaderIdle', 'GrinderHARedisUnreachable', 'GrinderHASplitBrain', 'GrinderPrometheusRuleFailures'],
  );
});

test('prometheus.yml sets the link bases as external labels and keeps them off the alerts', () => {
  const cfg = parse(readFileSync(join(PROM_DIR, 'prometheus.yml'), 'utf8')) as {
    global: { external_labels?: Record<string, string> };
    alerting: { alert_relabel_configs?: { action: string; regex: string }[] };
  };
  const ext = cfg.global.external_labels ?? {};
  assert.match(ext.grinder_runbook_url ?? '', /^https?:\/\/[^/]+\/.*docs\/runbooks\/ha-operations\.md$/);
  assert.match(ext.grinder_grafana_url ?? '', /^https?:\/\/[^/]+$/);
  const drops = (cfg.alerting.alert_relabel_configs ?? []).filter((c) => c.action === 'labeldrop').map((c) => new RegExp(`^(?:${c.regex})$`));
  for (const label of Object.keys(ext))
    assert.ok(
      drops.some((d) => d.test(label)),
      `external label ${label} is not dropped from alerts`,
    );
});

test('amtool: the Watchdog goes to the heartbeat receiver, critical to on-call, the rest to ops', () => {
  const route = (...labels: string[]): string => {
    const r = run('amtool', ['config', 'routes', 'test', `--config.file=${join(REPO_ROOT, 'alertmanager', 'alertmanager.yml')}`, ...labels]);
    assert.equal(r.status, 0, r.out);
    return r.out
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('Warning'))
      .join(',');
  };
  assert.equal(route(`alertname=${WATCHDOG}`, 'severity=none'), 'grinder-heartbeat');
  assert.equal(route('alertname=GrinderHABothStandby', 'severity=critical', 'grinder_cluster=c1'), 'grinder-oncall');
  assert.equal(route('alertname=GrinderHAReplicaDown', 'severity=warning', 'grinder_cluster=c1'), 'grinder-ops');
});
