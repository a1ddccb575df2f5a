// docs/runbooks/ha-operations.md keeps the operators' contract (commands, container names, ports,
// JSON bodies), never tells anyone to `curl -f` a /readyz that answers 503 on a standby, documents
// the observability ports compose really publishes, and all its in-page links resolve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { headingAnchors } from '../support/markdown';
import { REPO_ROOT } from '../../tools/kit/replica';

const RUNBOOK = readFileSync(join(REPO_ROOT, 'docs', 'runbooks', 'ha-operations.md'), 'utf8');

function codeLines(md: string): string[] {
  const out: string[] = [];
  let inBlock = false;
  for (const line of md.split('\n')) {
    if (line.trim().startsWith('```')) inBlock = !inBlock;
    else if (inBlock) out.push(line.trim());
  }
  return out;
}

test("the runbook keeps the operators' commands, names, ports and bodies", () => {
  const lines = codeLines(RUNBOOK);
  for (const cmd of [
    'docker compose -f docker-compose.ha.yml up --build -d',
    'docker compose -f docker-compose.ha.yml ps',
    'docker stop grinder_live_1  # or grinder_live_2',
    'sleep 12',
    'docker stop grinder-redis',
    'docker start grinder-redis',
    'curl -fsS http://localhost:9090/metrics | grep grinder_ha_role',
    'curl -fsS http://localhost:9091/metrics | grep grinder_ha_role',
    'docker ps | grep redis',
    'docker logs grinder-redis --tail=50',
    'docker logs grinder_live_1 --tail=100 | grep -i lock',
    'docker compose -f docker-compose.ha.yml down -v',
    'grinder-redis      Up (healthy)    6379/tcp',
    'grinder_live_1     Up (healthy)    0.0.0.0:9090->9090/tcp',
    'grinder_live_2     Up (healthy)    0.0.0.0:9091->9090/tcp',
  ]) {
    assert.ok(lines.includes(cmd), `runbook lost the command/output line: ${cmd}`);
  }
  for (const body of ['{"ready": true, "role": "active"}', '{"ready": false, "role": "standby"}']) {
    assert.ok(RUNBOOK.includes(body), `runbook lost the body ${body}`);
  }
  for (const s of ['grinder_ha_role{role="active"} 1', 'grinder_ha_role{role="standby"} 1', 'GRINDER Overview']) {
    assert.ok(RUNBOOK.includes(s), `runbook lost ${s}`);
  }
});

test('no command curls /readyz with -f (a STANDBY answers 503: exit 22, no body)', () => {
  const readyz = codeLines(RUNBOOK).filter((l) => l.startsWith('curl') && l.includes('/readyz'));
  assert.ok(readyz.length >= 8, `expected the runbook's readyz checks, found ${readyz.length}`);
  for (const l of readyz) {
    const flags = l.split(/\s+/).filter((w) => /^-[a-zA-Z]+$/.test(w));
    assert.ok(!flags.some((f) => f.includes('f')), `uses -f on /readyz: ${l}`);
  }
  // …and the pitfall is explained, with the right command.
  assert.match(RUNBOOK, /exit code 22/);
  assert.ok(RUNBOOK.includes("curl -sS -w ' %{http_code}\\n'"), 'the -w status-code variant is missing');
});

test('the runbook documents the ports the observability compose file publishes, and the local stack', () => {
  const compose = readFileSync(join(REPO_ROOT, 'docker-compose.obs.yml'), 'utf8');
  for (const [port, what] of [
    ['3000', 'Grafana'],
    ['9092', 'Prometheus'],
    ['9093', 'Alertmanager'],
    ['3200', 'Tempo'],
  ] as const) {
    assert.ok(compose.includes(`"${port}:`), `compose does not publish ${port}`);
    assert.ok(RUNBOOK.includes(`http://localhost:${port}`), `runbook does not document ${what} on ${port}`);
  }
  assert.ok(codeLines(RUNBOOK).includes('npm run ha:local'));
  assert.ok(RUNBOOK.includes('docker compose -f docker-compose.ha.yml -f docker-compose.obs.yml up --build -d'));
});

test('every in-page link of the runbook points at a heading', () => {
  const anchors = headingAnchors(RUNBOOK);
  const links = [...RUNBOOK.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1] ?? '');
  assert.ok(links.length > 5);
  for (const l of links) assert.ok(anchors.has(l), `broken link #${l}`);
});
