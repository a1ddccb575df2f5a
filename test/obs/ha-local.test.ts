// scripts/ha-local.ts (npm run ha:local): Redis and the runbook's two replicas without Docker,
// a clear line whenever the ACTIVE replica changes, the runbook's curl answers, and a clean stop
// on Ctrl-C. Ports are free ones here (the script defaults to 9090/9091).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { httpGet } from '../../tools/kit/http';
import { freePort } from '../../tools/kit/ports';
import { MAIN_JS, REPO_ROOT } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

let proc: ChildProcess | undefined;

after(async () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((r) => proc?.once('exit', r));
    proc.kill('SIGINT');
    await exited;
  }
});

async function readyz(port: number): Promise<{ status: number; body: string }> {
  const { status, body } = await httpGet(port, '/readyz');
  return { status, body };
}

test('ha-local starts Redis and both replicas, reports who is ACTIVE, follows a failover, stops cleanly on Ctrl-C', async () => {
  assert.ok(existsSync(MAIN_JS), 'run `npm run build` first');
  const ports = [await freePort(), await freePort()];
  let out = '';
  // As `npm run ha:local` runs it; tsx resolves from the repository root.
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts', 'ha-local.ts')], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      GRINDER_LOCAL_PORTS: ports.join(','),
      GRINDER_HA_LOCK_TTL_MS: '1500',
      GRINDER_HA_RENEW_INTERVAL_MS: '300',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc = child;
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const firstActive = await waitFor(
    'ha-local to print the ACTIVE replica',
    () => /ACTIVE: (grinder_live_[12]) \(http:\/\/localhost:(\d+)\)/.exec(out) ?? undefined,
    20_000,
    50,
  );
  const activeId = firstActive[1] as string;
  const activePort = Number(firstActive[2]);
  assert.ok(ports.includes(activePort));
  const dataDir = /data in (\S+)\)/.exec(out)?.[1];
  assert.ok(dataDir && existsSync(dataDir), `no Redis data dir in:\n${out}`);

  // The runbook's checks: exactly one ACTIVE, the other STANDBY, with the runbook's exact bodies.
  const standbyPort = ports.find((p) => p !== activePort) as number;
  assert.deepEqual(await readyz(activePort), { status: 200, body: '{"ready": true, "role": "active"}' });
  // The other replica may not have had its first answer from Redis yet on a busy machine (role
  // "unknown" until then); it must settle on STANDBY, never ACTIVE.
  const answers: string[] = [];
  const standby = await waitFor(
    'the other replica to answer as STANDBY',
    async () => {
      const r = await readyz(standbyPort);
      answers.push(r.body);
      return r.body.includes('"unknown"') ? undefined : r;
    },
    5_000,
    20,
  );
  assert.deepEqual(standby, { status: 503, body: '{"ready": false, "role": "standby"}' }, `answers: ${answers.join(' ')}`);

  // Crash the ACTIVE replica from the script's prompt: the other one takes over and it says so.
  const n = activeId.endsWith('1') ? 1 : 2;
  const otherId = n === 1 ? 'grinder_live_2' : 'grinder_live_1';
  child.stdin?.write(`kill ${n}\n`);
  await waitFor(`ha-local to report ${otherId} ACTIVE`, () => (out.includes(`ACTIVE: ${otherId}`) ? true : undefined), 15_000, 50);
  assert.deepEqual(await readyz(standbyPort), { status: 200, body: '{"ready": true, "role": "active"}' });

  // Ctrl-C: everything stops, exit 0, temp dir gone, ports free.
  child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
  clearTimeout(timer);
  assert.equal(code, 0, `ha-local did not exit cleanly:\n${out}`);
  assert.match(out, /stopped\n$/);
  assert.equal(existsSync(dataDir), false, 'temp dir left behind');
  for (const p of ports) await assert.rejects(readyz(p), `something still listens on ${p}`);
});
