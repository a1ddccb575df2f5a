// Runs every test file under test/ with Node's own test runner (TypeScript through tsx).
// Node 20's --test does not expand globs or pick up .ts files by itself, hence this list.
// Files run one at a time: many of them start real redis-server, replica and prometheus
// processes, and on a 2-core machine running them side by side would only make timings noisy.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : collect('test');
if (files.length === 0) {
  console.error('no test files found under test/');
  process.exit(1);
}
// A hung test (or a file kept alive by a socket a failing test forgot) must fail the run, not use
// up CI's 90 minutes: each test gets 3 minutes, the whole run 40.
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=180000', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  timeout: 40 * 60 * 1000,
  killSignal: 'SIGKILL',
});
if (r.error) console.error(`test run aborted: ${r.error.message}`);
process.exit(r.status ?? 1);
