/**
 * What GRINDER_REDIS_URL points at: one Redis, a master found through Redis Sentinel, or a Redis
 * Cluster. Parsed once at start-up; every message names the rule and never shows a password.
 *
 *   redis[s]://[[user]:password@]host[:port][/db]
 *   redis[s]+sentinel://[[user]:password@]host:port[,host:port...]/<master name>[/db]
 *   redis[s]+cluster://[[user]:password@]host:port[,host:port...]
 *
 * The user and password are the data nodes' (the master's and replicas'). Sentinels that want a
 * password of their own get it from GRINDER_REDIS_SENTINEL_PASSWORD (and
 * GRINDER_REDIS_SENTINEL_USERNAME), so a secret never has to sit in a URL's query.
 */
export type RedisMode = 'standalone' | 'sentinel' | 'cluster';

export interface HostPort {
  host: string;
  port: number;
}

interface Credentials {
  username?: string;
  password?: string;
  tls: boolean;
}

export type RedisTarget =
  | ({ mode: 'standalone'; url: string } & Credentials)
  | ({ mode: 'sentinel'; sentinels: HostPort[]; masterName: string; db: number; sentinelUsername?: string; sentinelPassword?: string } & Credentials)
  | ({ mode: 'cluster'; nodes: HostPort[] } & Credentials);

export class RedisUrlError extends Error {
  constructor(readonly rule: string) {
    super(rule);
    this.name = 'RedisUrlError';
  }
}

const MULTI = /^(rediss?)\+(sentinel|cluster):\/\/(?:([^@/?#]*)@)?([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/;

export function parseRedisTarget(url: string, env: Record<string, string | undefined> = {}): RedisTarget {
  if (/^rediss?:\/\//.test(url)) return { mode: 'standalone', url, tls: url.startsWith('rediss:'), ...standaloneCredentials(url) };
  const m = MULTI.exec(url);
  if (!m) {
    throw new RedisUrlError(
      'must be redis://host:6379/0, rediss://…, redis+sentinel://host:26379[,host:26379…]/<master name>[/db] or redis+cluster://host:6379[,host:6379…]',
    );
  }
  const [, scheme, kind, userinfo, hostList, path, query] = m;
  if (query) throw new RedisUrlError(`${kind} URLs take no query parameters; give the Sentinels' password in GRINDER_REDIS_SENTINEL_PASSWORD`);
  const credentials: Credentials = { tls: scheme === 'rediss', ...userinfoCredentials(userinfo) };
  const hosts = (hostList as string).split(',').map((h) => hostPort(h, kind === 'sentinel' ? 26_379 : 6_379));
  if (kind === 'sentinel') {
    const parts = (path ?? '').split('/').filter((p) => p !== '');
    if (parts.length === 0 || parts.length > 2) {
      throw new RedisUrlError('a Sentinel URL ends in /<master name> or /<master name>/<db>, e.g. redis+sentinel://sentinel:26379/mymaster/0');
    }
    const masterName = decodeURIComponent(parts[0] as string);
    const db = parts[1] === undefined ? 0 : Number(parts[1]);
    if (!/^\d+$/.test(parts[1] ?? '0') || db > 15) throw new RedisUrlError('the database after the master name must be a number from 0 to 15');
    const sentinelUsername = env.GRINDER_REDIS_SENTINEL_USERNAME?.trim() || undefined;
    const sentinelPassword = env.GRINDER_REDIS_SENTINEL_PASSWORD || undefined;
    return {
      mode: 'sentinel',
      sentinels: hosts,
      masterName,
      db,
      ...credentials,
      ...(sentinelUsername ? { sentinelUsername } : {}),
      ...(sentinelPassword ? { sentinelPassword } : {}),
    };
  }
  if (path && path !== '/') throw new RedisUrlError('a Cluster URL has no path: Redis Cluster has only database 0');
  return { mode: 'cluster', nodes: hosts, ...credentials };
}

function hostPort(text: string, defaultPort: number): HostPort {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m) throw new RedisUrlError(`"${text}" is not host or host:port`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65_535) throw new RedisUrlError(`port ${m[2]} is not from 1 to 65535`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

function userinfoCredentials(userinfo: string | undefined): Omit<Credentials, 'tls'> {
  if (userinfo === undefined || userinfo === '') return {};
  const colon = userinfo.indexOf(':');
  if (colon < 0) {
    throw new RedisUrlError(
      'the user info has no colon, so the Redis client would send it as a user name with an empty password; write redis+…://:PASSWORD@host for a password, or redis+…://USER:PASSWORD@host for an ACL user',
    );
  }
  const username = decodeURIComponent(userinfo.slice(0, colon));
  const password = decodeURIComponent(userinfo.slice(colon + 1));
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function standaloneCredentials(url: string): Omit<Credentials, 'tls'> {
  try {
    const u = new URL(url);
    return userinfoCredentials(u.username || u.password ? `${u.username}${u.password ? `:${u.password}` : ''}` : undefined);
  } catch {
    return {};
  }
}

/** The address to show for a target: hosts and master name, never a credential. */
export function describeTarget(t: RedisTarget): string {
  const scheme = (base: string): string => (t.tls ? `${base.replace('redis', 'rediss')}` : base);
  switch (t.mode) {
    case 'standalone':
      return t.url;
    case 'sentinel':
      return `${scheme('redis+sentinel')}://${t.sentinels.map((h) => `${h.host}:${h.port}`).join(',')}/${t.masterName}/${t.db}`;
    case 'cluster':
      return `${scheme('redis+cluster')}://${t.nodes.map((h) => `${h.host}:${h.port}`).join(',')}`;
  }
}
