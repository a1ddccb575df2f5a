import { after } from 'node:test';
import { RedisServer, type RedisServerOptions } from '../../tools/kit/redis';
import { Replica, type ReplicaOptions } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

/**
 * What the end-to-end files share: their own Redis servers and `node dist/main.js` replicas,
 * all stopped after the file's tests, and the HA settings with a short lease.
 */
export function e2eKit(ttlMs = 1_000, renewMs = 250) {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  return {
    ttlMs,
    onCleanup(fn: () => Promise<unknown>): void {
      cleanups.push(fn);
    },
    async redis(opts: RedisServerOptions = {}): Promise<RedisServer> {
      const r = await RedisServer.start(opts);
      cleanups.push(() => r.cleanup());
      return r;
    },
    async replica(env: Record<string, string>, opts: Omit<ReplicaOptions, 'env'> = {}): Promise<Replica> {
      const r = await Replica.start({ ...opts, env });
      cleanups.push(() => r.stop('SIGKILL'));
      return r;
    },
    haEnv(url: string, id: string, extra: Record<string, string> = {}): Record<string, string> {
      return {
        GRINDER_HA_ENABLED: 'true',
        GRINDER_REDIS_URL: url,
        GRINDER_HA_LOCK_TTL_MS: String(ttlMs),
        GRINDER_HA_RENEW_INTERVAL_MS: String(renewMs),
        GRINDER_INSTANCE_ID: id,
        ...extra,
      };
    },
    becomes(r: Replica, role: string, timeoutMs = ttlMs * 5): Promise<true> {
      return waitFor(`${r.port} to be ${role}`, async () => ((await r.readyRole()) === role ? true : undefined), timeoutMs, 5);
    },
  };
}
