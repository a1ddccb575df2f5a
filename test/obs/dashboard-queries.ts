// The GRINDER Overview dashboard's queries, as Grafana would send them to Prometheus for one
// cluster: variables substituted, instant or range as each target says. The scenario suite runs
// them against the Prometheus that scraped the scenario's replicas.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../tools/kit/replica';
import type { PrometheusServer, Sample } from '../../tools/kit/prometheus';

export const DASHBOARD_PATH = join(REPO_ROOT, 'grafana', 'dashboards', 'grinder-overview.json');

export interface DashTarget {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
}
export interface DashPanel {
  id: number;
  type: string;
  title: string;
  targets?: DashTarget[];
}
interface DashboardFile {
  panels: DashPanel[];
  annotations: { list: { name: string; target: { expr: string } }[] };
  templating: { list: { name: string; type: string; query: { query: string } | string }[] };
}

export function loadDashboard(): DashboardFile {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as DashboardFile;
}

export interface QueryWindow {
  cluster: string;
  /** Unix seconds. */
  start: number;
  end: number;
  /** Scrape interval of the test's Prometheus, seconds. */
  scrapeSeconds: number;
}

/** Grafana's substitution of the dashboard's variables and built-ins, for one cluster, all replicas. */
export function substitute(expr: string, w: QueryWindow): string {
  const range = Math.max(1, Math.round(w.end - w.start));
  const step = w.scrapeSeconds;
  const values: Record<string, string> = {
    cluster: w.cluster,
    instance: '.*',
    __interval: `${step}s`,
    // max($__interval + scrape interval, 4 × scrape interval)
    __rate_interval: `${Math.max(2 * step, 4 * step)}s`,
    __range: `${range}s`,
    __range_s: String(range),
  };
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a: string | undefined, b: string | undefined) => {
    const v = values[a ?? b ?? ''];
    if (v === undefined) throw new Error(`unknown variable ${m} in ${expr}`);
    return v;
  });
}

export interface PanelResult {
  panel: string;
  refId: string;
  expr: string;
  series: Sample[];
  /** Values of the last point of every series, by legend-ish key (the series' labels). */
  last: { labels: Record<string, string>; value: number }[];
}

/** Runs every target of every panel (and the annotation queries) over the window. */
export async function runDashboard(prom: PrometheusServer, w: QueryWindow): Promise<PanelResult[]> {
  const dash = loadDashboard();
  const out: PanelResult[] = [];
  const jobs: { panel: string; t: DashTarget }[] = [];
  for (const p of dash.panels) for (const t of p.targets ?? []) jobs.push({ panel: p.title, t });
  for (const a of dash.annotations.list) jobs.push({ panel: `annotation: ${a.name}`, t: { refId: 'Anno', expr: a.target.expr } });
  for (const { panel, t } of jobs) {
    const expr = substitute(t.expr, w);
    const r = t.instant ? await prom.query(expr, w.end) : await prom.queryRange(expr, w.start, w.end, w.scrapeSeconds);
    const series = r.result as Sample[];
    const last = series.map((s) => {
      const v = s.value ?? s.values?.[s.values.length - 1];
      return { labels: s.metric, value: v ? Number(v[1]) : Number.NaN };
    });
    out.push({ panel, refId: t.refId, expr, series, last });
  }
  return out;
}

/**
 * Panels none of whose queries returned data (Grafana shows a panel's data if any of its queries
 * has some).
 */
export function emptyPanels(results: PanelResult[]): string[] {
  const empty: string[] = [];
  const panels = [...new Set(results.map((r) => r.panel))].filter((p) => !p.startsWith('annotation:')); // annotations mark events; none may be due
  for (const panel of panels) {
    const mine = results.filter((r) => r.panel === panel);
    const points = mine.reduce((n, r) => n + r.series.reduce((k, s) => k + (s.values?.length ?? (s.value ? 1 : 0)), 0), 0);
    if (points > 0) continue;
    empty.push(`"${panel}": ${mine.map((r) => `${r.refId}: ${r.expr}`).join(' | ')}`);
  }
  return empty;
}

/** The last values of one panel target, for checks of what the panel shows. */
export function panelValues(results: PanelResult[], panel: string, refId = 'A'): { labels: Record<string, string>; value: number }[] {
  const r = results.find((x) => x.panel === panel && x.refId === refId);
  if (!r) throw new Error(`no panel "${panel}" ${refId} in the dashboard`);
  return r.last;
}
