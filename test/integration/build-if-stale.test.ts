// scripts/build-if-stale.mjs, which `npm start` runs first (prestart): dist/ is rebuilt only when it
// is missing or older than what it is built from. Every case works on a small project of its own in
// a temporary directory, with a stand-in scripts/build.mjs: the real dist/ is shared with other
// runs and must not be rebuilt or touched from here.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../../tools/kit/replica';

const SCRIPT = join(REPO_ROOT, 'scripts', 'build-if-stale.mjs');

type StaleReason = (root: string) => string | null;

async function staleReason(root: string): Promise<string | null> {
  // A computed specifier: the .mjs has no type declarations, this line gives it its one signature.
  const m = (await import(pathToFileURL(SCRIPT).href)) as { staleReason: StaleReason };
  return m.staleReason(root);
}

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

// Explicit times, well apart, so the file system's timestamp resolution cannot decide a case.
const MINUTE = 60_000;
const SOURCES_AT = Date.now() - 60 * MINUTE;
const BUILT_AT = Date.now() - 30 * MINUTE;
const EDITED_AT = Date.now() - 10 * MINUTE;

/** A file written with the given modification time. */
function put(root: string, path: string, mtimeMs: number, text = ''): void {
  const file = join(root, path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  utimesSync(file, new Date(mtimeMs), new Date(mtimeMs));
}

/**
 * A project whose dist/main.js was built after every input was last changed. Its build.mjs
 * writes dist/main.js (now, so newer than everything) and counts its runs in builds.log.
 */
function freshProject(): string {
  const root = mkdtempSync(join(tmpdir(), 'grinder-build-if-stale-'));
  roots.push(root);
  const fakeBuild = [
    "import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';",
    "mkdirSync('dist', { recursive: true });",
    "writeFileSync('dist/main.js', '// built\\n');",
    "appendFileSync('builds.log', 'built\\n');",
    'process.exit(Number(process.env.FAKE_BUILD_EXIT ?? 0));',
    '',
  ].join('\n');
  put(root, 'scripts/build.mjs', SOURCES_AT, fakeBuild);
  for (const input of ['package.json', 'package-lock.json', 'src/main.ts', 'src/ha/elector.ts']) put(root, input, SOURCES_AT, '{}');
  put(root, 'README.md', SOURCES_AT);
  put(root, 'dist/main.js', BUILT_AT, '// built\n');
  return root;
}

/** Runs the script as `npm start` does: node scripts/build-if-stale.mjs in the project's directory. */
function prestart(root: string, env: Record<string, string> = {}): { status: number | null; stderr: string; builds: number } {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  const log = join(root, 'builds.log');
  const builds = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0;
  return { status: r.status, stderr: r.stderr, builds };
}

describe('build-if-stale (npm start)', () => {
  it('is what npm runs before start', () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.prestart, 'node scripts/build-if-stale.mjs');
  });

  describe('staleReason', () => {
    it('a fresh dist/ needs no build, whatever changed outside the inputs', async () => {
      const root = freshProject();
      assert.equal(await staleReason(root), null);
      put(root, 'README.md', EDITED_AT);
      put(root, 'test/unit/new.test.ts', EDITED_AT);
      put(root, 'dist/main.js.map', EDITED_AT);
      assert.equal(await staleReason(root), null);
    });

    const edits: [string, string][] = [
      ['src/ha/elector.ts', 'src changed since the last build'],
      ['src/added.ts', 'src changed since the last build'],
      ['scripts/build.mjs', 'scripts/build.mjs changed since the last build'],
      ['package.json', 'package.json changed since the last build'],
      ['package-lock.json', 'package-lock.json changed since the last build'],
    ];
    for (const [path, reason] of edits) {
      it(`${path} newer than dist/main.js: "${reason}"`, async () => {
        const root = freshProject();
        put(root, path, EDITED_AT);
        assert.equal(await staleReason(root), reason);
      });
    }

    it('dist/main.js missing: "dist/main.js is missing"', async () => {
      const root = freshProject();
      rmSync(join(root, 'dist'), { recursive: true });
      assert.equal(await staleReason(root), 'dist/main.js is missing');
    });
  });

  describe('as npm start runs it', () => {
    it('a fresh dist/: no build, nothing printed', () => {
      const root = freshProject();
      assert.deepEqual(prestart(root), { status: 0, stderr: '', builds: 0 });
    });

    it('a source newer than dist/: builds once, says why, and the next start does not build again', () => {
      const root = freshProject();
      put(root, 'src/ha/elector.ts', EDITED_AT);
      assert.deepEqual(prestart(root), { status: 0, stderr: 'grinder: building (src changed since the last build)\n', builds: 1 });
      assert.deepEqual(prestart(root), { status: 0, stderr: '', builds: 1 });
    });

    it('dist/ missing: builds', () => {
      const root = freshProject();
      rmSync(join(root, 'dist'), { recursive: true });
      assert.deepEqual(prestart(root), { status: 0, stderr: 'grinder: building (dist/main.js is missing)\n', builds: 1 });
      assert.ok(existsSync(join(root, 'dist', 'main.js')));
    });

    it("a failed build fails the prestart with the build's exit code, so npm does not start a stale dist/", () => {
      const root = freshProject();
      put(root, 'package.json', EDITED_AT, '{}');
      const r = prestart(root, { FAKE_BUILD_EXIT: '3' });
      assert.equal(r.status, 3);
      assert.equal(r.builds, 1);
    });
  });
});
