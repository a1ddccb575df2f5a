// `npm start` runs this first (prestart): it builds dist/ only when dist/main.js is missing or
// older than anything it is built from, so that a start after the first one answers at once
// instead of after a rebuild.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const INPUTS = ['src', 'scripts/build.mjs', 'package.json', 'package-lock.json'];

function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

/** Why dist/ under `root` needs a build, or null when it is up to date. */
export function staleReason(root) {
  const out = join(root, 'dist', 'main.js');
  if (!existsSync(out)) return 'dist/main.js is missing';
  const built = statSync(out).mtimeMs;
  for (const input of INPUTS) {
    if (newestMtime(join(root, input)) > built) return `${input} changed since the last build`;
  }
  return null;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const why = staleReason(process.cwd());
  if (why !== null) {
    process.stderr.write(`grinder: building (${why})\n`);
    const r = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
}
