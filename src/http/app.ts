import { errMessage } from '../error-text';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { ClusterView } from '../cluster/view';
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
  /**
   * Reads the cluster view from Redis for GET /cluster; null (or absent) with HA disabled, where
   * there is no cluster to read and /cluster answers 404 saying so.
   */
  cluster?: (() => Promise<ClusterView>) | null;
  /** Called with whatever made a handler fail (the client got a 500). */
  onError?: (err: unknown) => void;
}

export interface HttpApp {
  callback(): RequestListener;
}

// The runbook's exact bytes (note the spaces): operators and scripts compare them literally.
const READY_BODIES = {
  active: '{"ready": true, "role": "active"}',
  standby: '{"ready": false, "role": "standby"}',
  unknown: '{"ready": false, "role": "unknown"}',
} as const;

const ALLOW = 'HEAD, GET';
const NO_STORE = { 'Cache-Control': 'no-store' };

interface Answer {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

type Route = () => Answer | Promise<Answer>;

/**
 * The endpoints on node:http directly. (Koa and @koa/router served them until 0.2: with
 * their dependencies they cost about 12 MiB of resident memory, a fifth of the whole process,
 * and half the /readyz throughput, for four GET routes.) Matching follows what the router did:
 * case-insensitive, one trailing slash allowed, the query string ignored, HEAD answered like GET
 * without a body, any other method 405 with `Allow`.
 */
/** What /readyz answers 200 for; grinder_readyz_ready reports the same. */
export function isReady(ha: HaStatusSource): boolean {
  return readyFor(ha.currentRole());
}

const readyFor = (role: Role): boolean => role === 'active';

export function createHttpApp(deps: HttpDeps): HttpApp {
  // Requests that arrive while a read is in flight share it: a burst of /cluster polls costs Redis
  // one read, on the connection the lease also uses.
  let clusterRead: Promise<Answer> | null = null;
  const readCluster = (read: () => Promise<ClusterView>): Promise<Answer> =>
    (clusterRead ??= read()
      .then(
        (view): Answer => ({ status: 200, type: JSON_TYPE, body: JSON.stringify(view), headers: NO_STORE }),
        (err: unknown): Answer => ({
          ...error(503, 'cluster view unavailable', `could not read the cluster view from Redis: ${errMessage(err)}; see /status (redis_connected) and retry`),
          headers: NO_STORE,
        }),
      )
      .finally(() => {
        clusterRead = null;
      }));
  const routes = new Map<string, Route>([
    [
      '/readyz',
      () => {
        const role = deps.ha.currentRole();
        return { status: readyFor(role) ? 200 : 503, type: JSON_TYPE, body: READY_BODIES[role], headers: NO_STORE };
      },
    ],
    [
      '/healthz',
      () => {
        const healthy = deps.ha.snapshot().loopHealthy;
        const uptime = Math.round(deps.uptimeSeconds() * 1000) / 1000;
        const body = healthy
          ? `{"status": "ok", "uptime_s": ${uptime}}`
          : `{"status": "stuck", "uptime_s": ${uptime}, "error": "the election loop has not run for longer than the lease TTL; the process needs a restart"}`;
        return { status: healthy ? 200 : 503, type: JSON_TYPE, body, headers: NO_STORE };
      },
    ],
    ['/metrics', async () => ({ status: 200, type: PROMETHEUS_CONTENT_TYPE, body: await deps.metricsText() })],
    [
      '/status',
      () => {
        const s = deps.ha.snapshot();
        const body = {
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
        return { status: 200, type: JSON_TYPE, body: JSON.stringify(body), headers: NO_STORE };
      },
    ],
    [
      '/cluster',
      () =>
        deps.cluster
          ? readCluster(deps.cluster)
          : error(
              404,
              'not found',
              'the cluster view needs HA (GRINDER_HA_ENABLED=true): with HA disabled this replica is the only one and registers nowhere; see /status',
            ),
    ],
  ]);

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = pathOf(req.url ?? '/');
    const route = routes.get(routeKey(path));
    if (route === undefined) {
      send(req, res, error(404, 'not found', `no such path ${path}; try /readyz, /healthz, /metrics, /status or /cluster`));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, { ...error(405, 'method not allowed', `${req.method ?? '?'} is not supported on ${path}; use ${ALLOW}`), headers: { Allow: ALLOW } });
      return;
    }
    let answer: Answer | Promise<Answer>;
    try {
      answer = route();
    } catch (err) {
      failed(req, res, err);
      return;
    }
    if (answer instanceof Promise) {
      answer.then(
        (a) => send(req, res, a),
        (err: unknown) => failed(req, res, err),
      );
    } else {
      send(req, res, answer);
    }
  };

  const failed = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    send(req, res, error(500, 'internal error', errMessage(err)));
    deps.onError?.(err);
  };

  return { callback: () => handle };
}

function error(status: number, title: string, detail: string): Answer {
  return { status, type: JSON_TYPE, body: JSON.stringify({ error: title, detail }) };
}

function send(req: IncomingMessage, res: ServerResponse, a: Answer): void {
  res.writeHead(a.status, { 'Content-Type': a.type, 'Content-Length': Buffer.byteLength(a.body), ...a.headers });
  res.end(req.method === 'HEAD' ? undefined : a.body);
}

function pathOf(url: string): string {
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

function routeKey(path: string): string {
  const p = path.toLowerCase();
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}
