import Koa from 'koa';
import Router from '@koa/router';
import type { HaStatusSource, Role } from '../ha/role';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

/** Static facts /status reports next to the live HA snapshot. */
export interface StatusInfo {
  instanceId: string;
  version: string;
  lockKey: string | null;
  lockTtlMs: number | null;
  renewIntervalMs: number | null;
}

export interface HttpDeps {
  ha: HaStatusSource;
  info: StatusInfo;
  metricsText(): Promise<string>;
  /** Monotonic seconds since start. */
  uptimeSeconds(): number;
}

// The runbook's exact bytes (note the spaces): operators and scripts compare them literally.
const READY_BODIES = {
  active: '{"ready": true, "role": "active"}',
  standby: '{"ready": false, "role": "standby"}',
  unknown: '{"ready": false, "role": "unknown"}',
} as const;

/** What /readyz answers 200 for; grinder_readyz_ready reports the same. */
export function isReady(ha: HaStatusSource): boolean {
  return readyFor(ha.currentRole());
}

const readyFor = (role: Role): boolean => role === 'active';

export function createHttpApp(deps: HttpDeps): Koa {
  const app = new Koa();
  const router = new Router();

  router.get('/readyz', (ctx) => {
    const role = deps.ha.currentRole();
    ctx.status = readyFor(role) ? 200 : 503;
    ctx.type = JSON_TYPE;
    ctx.body = READY_BODIES[role];
    ctx.set('Cache-Control', 'no-store');
  });

  router.get('/healthz', (ctx) => {
    const healthy = deps.ha.snapshot().loopHealthy;
    const uptime = Math.round(deps.uptimeSeconds() * 1000) / 1000;
    ctx.status = healthy ? 200 : 503;
    ctx.type = JSON_TYPE;
    ctx.body = healthy
      ? `{"status": "ok", "uptime_s": ${uptime}}`
      : `{"status": "stuck", "uptime_s": ${uptime}, "error": "the election loop has not run for longer than the lease TTL; the process needs a restart"}`;
    ctx.set('Cache-Control', 'no-store');
  });

  router.get('/metrics', async (ctx) => {
    ctx.body = await deps.metricsText();
    ctx.type = PROMETHEUS_CONTENT_TYPE;
    ctx.set('Content-Type', PROMETHEUS_CONTENT_TYPE);
  });

  router.get('/status', (ctx) => {
    const s = deps.ha.snapshot();
    ctx.type = JSON_TYPE;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      instance_id: deps.info.instanceId,
      role: s.role,
      ha_enabled: s.haEnabled,
      holder: s.holder,
      fencing_token: s.fencingToken,
      lease_remaining_ms: s.leaseRemainingMs,
      last_renew_age_ms: s.lastRenewAgeMs,
      redis_connected: s.redisConnected,
      lease_state: s.leaseState,
      redis_maxmemory_policy: s.redisMaxmemoryPolicy,
      redis_durable: s.redisDurable,
      redis_mode: s.redisMode,
      redis_master: s.redisMaster,
      replicas_acked: s.replicasAcked,
      lock_key: deps.info.lockKey,
      lock_ttl_ms: deps.info.lockTtlMs,
      renew_interval_ms: deps.info.renewIntervalMs,
      loop_healthy: s.loopHealthy,
      uptime_s: Math.round(deps.uptimeSeconds() * 1000) / 1000,
      version: deps.info.version,
    };
  });

  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      ctx.status = 500;
      ctx.type = JSON_TYPE;
      ctx.body = { error: 'internal error', detail: err instanceof Error ? err.message : String(err) };
      ctx.app.emit('error', err, ctx);
      return;
    }
    if (ctx.body !== undefined && ctx.body !== null) return;
    // @koa/router answers 501 (text) for a method outside its list (PROPFIND, TRACE, ...) on a
    // path that exists; for this API that is a wrong method like any other: 405 with a JSON body.
    if (ctx.status === 501 && ctx.response.get('Allow')) ctx.status = 405;
    if (ctx.status === 405) {
      ctx.type = JSON_TYPE;
      ctx.body = { error: 'method not allowed', detail: `${ctx.method} is not supported on ${ctx.path}; use ${ctx.response.get('Allow')}` };
    } else if (ctx.status === 404) {
      ctx.status = 404;
      ctx.type = JSON_TYPE;
      ctx.body = { error: 'not found', detail: `no such path ${ctx.path}; try /readyz, /healthz, /metrics or /status` };
    }
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
