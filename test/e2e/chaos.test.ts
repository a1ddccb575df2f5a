import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../tools/kit/replica';

/*
 * The short chaos run, as CI runs it: the real CLI (tools/chaos/cli.ts) with real processes — one
 * redis-server, three `node dist/main.js` replicas each behind a proxy — about 20 s of faults under
 * a fixed seed, then the checker. Safety figures must be 0; the run must have injected faults of
 * several kinds and the leaders must have done accepted work; nothing it started may be left.
 * (npm test builds dist/ first.)
 */

const DURATION_S = 20;
const SEED = 20240611;

let child: ChildProcess | null = null;
const dir = mkdtempSync(join(tmpdir(), 'grinder-chaos-test-'));

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child?.once('exit', () => resolve()));
    child.kill('SIGTERM'); // the CLI stops everything it started
    const t = setTimeout(() => {
      child?.kill('SIGTERM'); // a second signal forces it: every child SIGKILLed at once
    }, 15_000);
    await exited;
    clearTimeout(t);
  }
  rmSync(dir, { recursive: true, force: true });
});

interface JsonReport {
  seed: number;
  safe: boolean;
  verdict: string;
  exitCode: number;
  overlaps: unknown[];
  staleWrites: unknown[];
  faultsTotal: number;
  faultsByKind: Record<string, number>;
  acceptedWrites: number;
  leaderships: number;
  leadershipsWithWork: number;
  harnessErrors: string[];
  availabilityPct: number | null;
  longestNoLeader: { ms: number } | null;
}

function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', join('tools', 'chaos', 'cli.ts'), ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill('SIGTERM');
      reject(new Error(`the chaos run took more than ${timeoutMs} ms; it must be bounded. stderr:\n${stderr}`));
    }, timeoutMs);
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('chaos: a short run with a fixed seed', () => {
  it(`injects faults for ${DURATION_S} s and the checker finds no safety violation`, async () => {
    const json = join(dir, 'report.json');
    const startedAt = Date.now();
    const { code, stdout, stderr } = await runCli(
      ['--duration', String(DURATION_S), '--replicas', '3', '--seed', String(SEED), '--ttl', '1000', '--renew', '250', '--settle', '700-1400', '--json', json],
      // start-up + duration + end phase, with room for a slow CI machine: still bounded
      (DURATION_S + 45) * 1_000,
    );
    const took = (Date.now() - startedAt) / 1000;
    console.log(stdout);
    console.log(`# chaos run took ${took.toFixed(1)} s, exit ${String(code)}`);
    assert.equal(code, 0, `the chaos CLI exits 0 when safe; stderr:\n${stderr}`);

    const r = JSON.parse(readFileSync(json, 'utf8')) as JsonReport;
    assert.equal(r.seed, SEED);
    assert.deepEqual(r.overlaps, [], 'no overlapping leaderships');
    assert.deepEqual(r.staleWrites, [], 'no stale-token write accepted');
    assert.equal(r.safe, true);
    assert.deepEqual(r.harnessErrors, []);
    assert.equal(r.verdict, 'PASS');
    assert.equal(r.exitCode, 0);

    const kinds = Object.entries(r.faultsByKind).filter(([, n]) => n > 0);
    assert.ok(r.faultsTotal >= 4, `at least 4 faults injected (got ${r.faultsTotal})`);
    assert.ok(kinds.length >= 4, `faults of at least 4 kinds (got ${kinds.map(([k]) => k).join(', ')})`);
    assert.ok(r.leaderships >= 2, `leadership changed hands under the faults (${r.leaderships} leaderships)`);
    assert.ok(r.acceptedWrites >= 50, `the leaders did accepted work (${r.acceptedWrites} writes)`);
    assert.ok(r.availabilityPct !== null && r.availabilityPct > 0);
    assert.match(stdout, /overlapping leaderships: +0 /);
    assert.match(stdout, /stale-token writes accepted: +0 /);
    assert.match(stdout, /Verdict: PASS/);

    // It cleaned up after itself: every process it started is gone, Redis' temp dir too.
    const pids = [...stderr.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(pids.length >= 3, 'the progress lines name the replica pids');
    assert.deepEqual(
      pids.filter((p) => isAlive(p)),
      [],
      'no replica left running',
    );
    const redisDir = /dir (\/\S+grinder-chaos-redis-\S+)/.exec(stderr)?.[1];
    assert.ok(redisDir, 'the progress names the Redis temp dir');
    assert.equal(existsSync(redisDir), false, 'the Redis temp dir is removed');
  });

  it('on Redis Sentinel, with master kills among the faults: no safety violation', async () => {
    const json = join(dir, 'sentinel.json');
    const { code, stdout, stderr } = await runCli(
      [
        '--sentinel',
        '--duration',
        '25',
        '--replicas',
        '3',
        '--seed',
        '7',
        '--ttl',
        '1000',
        '--renew',
        '250',
        '--settle',
        '700-1400',
        '--faults',
        'master-kill,kill,zombie,record-delete',
        '--json',
        json,
      ],
      (25 + 60) * 1_000,
    );
    console.log(stdout);
    assert.equal(code, 0, `the chaos CLI exits 0 when safe; stderr:\n${stderr}`);
    const r = JSON.parse(readFileSync(json, 'utf8')) as JsonReport;
    assert.deepEqual(r.overlaps, [], 'no overlapping leaderships');
    assert.deepEqual(r.staleWrites, [], 'no stale-token write accepted');
    assert.deepEqual(r.harnessErrors, []);
    assert.ok((r.faultsByKind['master-kill'] ?? 0) >= 1, `at least one master was killed (${JSON.stringify(r.faultsByKind)})`);
    assert.ok(r.acceptedWrites >= 50, `the leaders did accepted work (${r.acceptedWrites} writes)`);
    const pids = [...stderr.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(
      pids.filter((p) => isAlive(p)),
      [],
      'no replica left running',
    );
  });
});
