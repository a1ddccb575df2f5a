import { rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { ChildProcesses } from '../kit/children';
import type { RedisServer } from '../kit/redis';
import type { Replica } from '../kit/replica';
import type { DistSnapshot } from './replica';

/**
 * Everything the bench started, so that every process and temp dir goes away on a normal end, an
 * error, Ctrl-C or SIGTERM. killAllNow() is synchronous so it also works from process.on('exit').
 */
export class Resources {
  private readonly replicas = new Set<Replica>();
  private readonly redises = new Set<RedisServer>();
  private readonly children = new ChildProcesses();
  private readonly snapshots = new Set<DistSnapshot>();

  replica(r: Replica): void {
    this.replicas.add(r);
    void r.exited.then(() => this.replicas.delete(r));
  }

  redis(r: RedisServer): RedisServer {
    this.redises.add(r);
    return r;
  }

  child(c: ChildProcess): ChildProcess {
    return this.children.add(c);
  }

  snapshot(s: DistSnapshot): DistSnapshot {
    this.snapshots.add(s);
    return s;
  }

  /** Stops a Redis server for good and forgets it. */
  async releaseRedis(r: RedisServer): Promise<void> {
    await r.cleanup();
    this.redises.delete(r);
  }

  /** SIGKILLs everything still running and removes the temp dirs, without waiting. */
  killAllNow(): void {
    this.children.killAllNow();
    for (const r of this.replicas) r.signal('SIGKILL');
    for (const r of this.redises) {
      // stop() sends the signal synchronously before its first await.
      void r.stop('SIGKILL');
      rmSync(r.dir, { recursive: true, force: true });
    }
    for (const s of this.snapshots) s.remove();
    this.redises.clear();
    this.snapshots.clear();
  }

  /** Kills everything and waits until the processes are gone. */
  async closeAll(): Promise<void> {
    const replicas = [...this.replicas];
    const redises = [...this.redises];
    for (const r of replicas) r.signal('SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
    await Promise.all(redises.map((r) => r.cleanup()));
    this.redises.clear();
    this.killAllNow();
  }
}
