import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../kit/ports';
import { REPO_ROOT, Replica } from '../kit/replica';

/**
 * A private copy of dist/ for this run. Other people rebuild dist/ (`npm test` starts with
 * rm -rf dist) while a ten-minute bench runs; replicas restarted between trials must run the
 * build the bench started with, not a missing or half-written one. It lives under .tmp/ (git
 * ignored) so that node_modules still resolves from the repository root.
 */
export class DistSnapshot {
  readonly dir: string;
  readonly mainJs: string;

  constructor() {
    const src = join(REPO_ROOT, 'dist');
    if (!existsSync(join(src, 'main.js'))) throw new Error('dist/main.js is missing: run `npm run build` first (npm run bench does)');
    this.dir = join(REPO_ROOT, '.tmp', `bench-${process.pid}`);
    mkdirSync(this.dir, { recursive: true });
    cpSync(src, join(this.dir, 'dist'), { recursive: true });
    cpSync(join(REPO_ROOT, 'package.json'), join(this.dir, 'package.json'));
    this.mainJs = join(this.dir, 'dist', 'main.js');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Spawns a bench replica and waits until it answers /healthz; `track` sees it as soon as it exists.
 * `script` is the snapshot's dist/main.js, or any script that reads GRINDER_METRICS_PORT and
 * answers /healthz (the baseline elector). It keeps only its role changes and its last lines (a
 * long bench stays small), and is probed over keep-alive connections of its own, so that a tight
 * poll does not pay a TCP handshake per probe.
 */
export async function startBenchReplica(
  script: string,
  name: string,
  env: Record<string, string>,
  track: (r: Replica) => void,
  port?: number,
): Promise<Replica> {
  const r = Replica.spawn({ mainJs: script, name, env, port: port ?? (await freePort()), keepAlive: true, retainOutput: false });
  track(r);
  await r.waitHealthy(15_000, 10);
  return r;
}
