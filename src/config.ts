import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { leaseTiming } from './ha/timing';
import { leaseKeys, sharesLockSlot } from './redis/keys';
import { parseRedisTarget, RedisUrlError, type RedisTarget } from './redis/target';

/**
 * Start-up configuration, from environment variables (and `--metrics-port N`). Everything is
 * validated here, before anything starts, so a bad value stops the process with one line that
 * names the variable, the value and the rule instead of failing later in some other way.
 */
export interface Config {
  haEnabled: boolean;
  redisUrl: string;
  /** What the URL points at: one Redis, a Sentinel-managed master, or a Cluster. */
  redis: RedisTarget;
  /** Replicas that must acknowledge each lease write (WAIT): a number, or 'auto'. */
  minReplicas: number | 'auto';
  lockTtlMs: number;
  renewIntervalMs: number;
  lockKey: string;
  /** The `grinder_cluster` label of every series: replicas that share one lease share it. */
  cluster: string;
  instanceId: string;
  metricsPort: number;
  httpHost: string;
  /** Where other tools reach this replica's HTTP endpoint (GRINDER_ADVERTISE_URL), as shown in the cluster view. */
  advertiseUrl: string;
  logLevel: LogLevel;
  live: LiveConfig;
}

export interface LiveConfig {
  enabled: boolean;
  intervalMs: number;
  streamKey: string;
  streamMaxLen: number;
  /** Consecutive failed live writes after which the leader resigns. */
  maxConsecutiveFailures: number;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULTS = {
  haEnabled: false,
  redisUrl: 'redis://localhost:6379/0',
  lockTtlMs: 10_000,
  renewIntervalMs: 3_000,
  lockKey: 'grinder:leader:lock',
  metricsPort: 9090,
  httpHost: '0.0.0.0',
  logLevel: 'info' as LogLevel,
  liveEnabled: true,
  liveIntervalMs: 1_000,
  liveStreamMaxLen: 10_000,
  liveMaxFailures: 3,
};

/** The exit code for a configuration the service refuses to start with. */
export const CONFIG_EXIT_CODE = 2;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly rule: string,
  ) {
    super(`invalid configuration: ${variable}=${JSON.stringify(value)}: ${rule}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const TRUE_WORDS = new Set(['true', '1', 'yes']);
const FALSE_WORDS = new Set(['false', '0', 'no']);

function readBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = raw.trim().toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  throw new ConfigError(name, raw, 'must be one of true/false/1/0/yes/no');
}

function readInt(env: Env, name: string, fallback: number, min: number, max: number, unit = ''): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  return parseIntInRange(name, raw, min, max, unit);
}

export function parseIntInRange(name: string, raw: string, min: number, max: number, unit: string): number {
  const v = raw.trim();
  if (!/^\d+$/.test(v)) throw new ConfigError(name, raw, `must be a whole number${unit} from ${min} to ${max}`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, raw, `must be a whole number${unit} from ${min} to ${max}`);
  return n;
}

function readString(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  return raw.trim();
}

/**
 * Redis URLs carry passwords: anything shown to a human goes through this first. A password can
 * sit in the userinfo (redis://:pw@host) or, since ioredis merges query parameters into its
 * options, in the query (redis://host?password=pw). User info without a colon
 * (redis://SECRET@host) is almost always a password written without its colon, so it is hidden
 * too; a user name beside a password (redis://default:pw@host) is shown. A URL without a host (a
 * typo such as redis:/:pw@host) has no userinfo to the URL parser, so there the text before an @
 * is hidden.
 */
export function redactRedisUrl(url: string): string {
  const multi = /^(rediss?\+(?:sentinel|cluster):\/\/)([^@/?#]*@)?(.*)$/s.exec(url);
  if (multi) {
    const userinfo = multi[2];
    if (!userinfo) return url;
    const colon = userinfo.indexOf(':');
    // Everything before the @ is secret unless it is "user:": a lone word is a password.
    return `${multi[1]}${colon >= 0 ? `${userinfo.slice(0, colon)}:***@` : '***@'}${multi[3]}`;
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '<unparsable Redis URL>';
  }
  if (u.password) u.password = '***';
  else if (u.username) u.username = '***';
  for (const key of [...new Set(u.searchParams.keys())]) {
    if (/pass|secret|token|auth|user/i.test(key)) u.searchParams.set(key, '***');
  }
  const shown = u.toString();
  return u.host === '' ? shown.replace(/:[^:@/]*@/g, ':***@').replace(/\/[^/:@]+@/g, '/***@') : shown;
}

/** Redis' default `databases 16`: the numbers every Redis accepts (Redis Cluster only has 0). */
export const MAX_REDIS_DB = 15;

/** Where the lease's Redis is, for diagnostics and span attributes; never the credentials. */
export interface RedisEndpoint {
  host: string;
  port: number;
  db: number;
  tls: boolean;
}

/** One Redis: its host; Sentinel and Cluster: the first Sentinel or seed node (the master moves). */
export function redisEndpoint(target: RedisTarget): RedisEndpoint {
  if (target.mode === 'standalone') {
    const u = new URL(target.url);
    const dbText = u.pathname.replace(/^\//, '') || u.searchParams.get('db') || '0';
    return {
      // new URL() keeps the brackets of an IPv6 literal; clients and semantic conventions want without.
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port === '' ? 6379 : Number(u.port),
      db: Number(dbText),
      tls: target.tls,
    };
  }
  const first = target.mode === 'sentinel' ? target.sentinels[0] : target.nodes[0];
  return { host: first?.host ?? '', port: first?.port ?? 0, db: target.mode === 'sentinel' ? target.db : 0, tls: target.tls };
}

export function validateRedisUrl(raw: string, env: Env): RedisTarget {
  const name = 'GRINDER_REDIS_URL';
  const shown = redactRedisUrl(raw);
  if (/^rediss?\+(sentinel|cluster):\/\//.test(raw)) {
    try {
      return parseRedisTarget(raw, env);
    } catch (err) {
      if (err instanceof RedisUrlError) throw new ConfigError(name, shown, err.rule);
      throw err;
    }
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    // The value may carry a password; show its shape only.
    throw new ConfigError(
      name,
      '<unparsable>',
      'must be a URL such as redis://[:password@]host:6379/0, rediss://…, redis+sentinel://host:26379/mymaster or redis+cluster://host:6379',
    );
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(name, shown, 'the scheme must be redis://, rediss:// (TLS), redis+sentinel:// or redis+cluster://');
  }
  if (u.hostname === '') throw new ConfigError(name, shown, 'the URL must name a host, e.g. redis://redis:6379/0');
  if (
    u.username !== '' &&
    !raw
      .slice(0, raw.indexOf('@'))
      .slice(u.protocol.length + 2)
      .includes(':')
  ) {
    throw new ConfigError(
      name,
      shown,
      'the user info has no colon, so the Redis client would send it as a user name with an empty password; write redis://:PASSWORD@host for a password, or redis://USER:PASSWORD@host for an ACL user',
    );
  }
  const path = u.pathname.replace(/^\//, '');
  const query = u.searchParams.get('db');
  for (const db of [path, query]) {
    if (db === null || db === '') continue;
    if (!/^\d+$/.test(db)) throw new ConfigError(name, shown, 'the path must be a database number, e.g. /0');
    if (Number(db) > MAX_REDIS_DB) {
      throw new ConfigError(
        name,
        shown,
        `database ${db} is out of range: use 0 to ${MAX_REDIS_DB} (a Redis has 16 databases unless its \`databases\` setting says otherwise, Redis Cluster only 0); to share one Redis between deployments, give each its own GRINDER_HA_LOCK_KEY instead`,
      );
    }
  }
  return parseRedisTarget(raw, env);
}

export function readMinReplicas(env: Env): number | 'auto' {
  const raw = env.GRINDER_REDIS_MIN_REPLICAS;
  if (raw === undefined || raw.trim() === '' || raw.trim().toLowerCase() === 'auto') return 'auto';
  if (!/^\s*\d+\s*$/.test(raw))
    throw new ConfigError(
      'GRINDER_REDIS_MIN_REPLICAS',
      raw,
      'must be auto (one replica once the master was seen with one; none with one Redis) or a whole number from 0 to 16',
    );
  return parseIntInRange('GRINDER_REDIS_MIN_REPLICAS', raw, 0, 16, '');
}

const CLUSTER_RULE = /^[A-Za-z0-9_.:@/-]{1,128}$/;

/**
 * The default cluster name is the lock key: replicas that compete for one lease are one cluster.
 * Characters a cluster name may not contain become `_`, so any valid lock key yields a valid name.
 */
export function defaultCluster(lockKey: string): string {
  return lockKey.replace(/[^A-Za-z0-9_.:@/-]/g, '_').slice(0, 128);
}

/** A host name as RFC 1123 allows it: dot-separated labels of letters, digits and inner hyphens. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function validateHttpHost(host: string): void {
  if (isIP(host) !== 0 || HOST_NAME.test(host)) return;
  throw new ConfigError(
    'GRINDER_HTTP_HOST',
    host,
    'must be an IP address of this machine (0.0.0.0 for every IPv4 interface, :: for every interface, 127.0.0.1 for local only) or a host name that resolves to one',
  );
}

const ADVERTISE_EXAMPLE = 'e.g. http://grinder-1:9090';

/**
 * GRINDER_ADVERTISE_URL: what `grinder list` and /cluster show as this replica's address, so
 * scheme, host and port only (tools append /status themselves) and never credentials (everyone who
 * reads the cluster view sees it). The default is this host's name, which is what other containers
 * and hosts usually reach it by; behind NAT or a proxy it has to be set.
 */
function readAdvertiseUrl(env: Env, metricsPort: number): string {
  const name = 'GRINDER_ADVERTISE_URL';
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') {
    try {
      return new URL(`http://${hostname()}:${metricsPort}`).origin;
    } catch {
      return `http://localhost:${metricsPort}`;
    }
  }
  const v = raw.trim();
  // Any user info is blanked before the value appears in an error: it may hold a password.
  const shown = v.replace(/\/\/[^/?#]*@/, '//***@');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(name, shown, `must be an http:// or https:// URL at which other tools reach this replica's HTTP endpoint, ${ADVERTISE_EXAMPLE}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(name, shown, `the scheme must be http:// or https:// (this replica's HTTP endpoint), ${ADVERTISE_EXAMPLE}`);
  }
  if (u.username !== '' || u.password !== '') {
    u.username = '***';
    u.password = '';
    throw new ConfigError(
      name,
      u.href,
      `must not contain user info: everyone who reads the cluster view (grinder list, /cluster) sees this URL; give the address only, ${ADVERTISE_EXAMPLE}`,
    );
  }
  if (u.hostname === '') throw new ConfigError(name, shown, `the URL must name a host, ${ADVERTISE_EXAMPLE}`);
  if (u.pathname !== '/' || /[?#]/.test(v)) {
    throw new ConfigError(
      name,
      shown,
      `must be scheme, host and port only, without a path, query or fragment (tools add /status etc. themselves), ${ADVERTISE_EXAMPLE}`,
    );
  }
  return u.origin;
}

export function defaultInstanceId(): string {
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-') || 'host';
  return `grinder-${host}-${randomBytes(4).toString('hex')}`;
}

/** Reads `--metrics-port N` / `--metrics-port=N`; anything else on the command line is an error. */
function metricsPortFromArgs(argv: readonly string[]): string | undefined {
  let port: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--metrics-port') {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError('--metrics-port', '', 'needs a port number, e.g. --metrics-port 9091');
      port = next;
      i++;
    } else if (a.startsWith('--metrics-port=')) {
      port = a.slice('--metrics-port='.length);
    } else {
      // Show the option name only: a mistyped --redis-url=redis://:secret@… must not be echoed.
      const shown = a.startsWith('-') ? a.replace(/=.*$/s, '=…') : '<value>';
      throw new ConfigError(
        'argument',
        shown,
        'unknown argument; the only option is --metrics-port N (everything else is configured through GRINDER_* environment variables)',
      );
    }
  }
  return port;
}

/**
 * The renew interval against the TTL (`renewRaw`: the value to show, as set). Exported for the
 * library's createElector, which applies the same rules to its options.
 */
export function checkLeaseTiming(lockTtlMs: number, renewIntervalMs: number, renewRaw: string): void {
  if (renewIntervalMs >= lockTtlMs) {
    throw new ConfigError(
      'GRINDER_HA_RENEW_INTERVAL_MS',
      renewRaw,
      `must be less than GRINDER_HA_LOCK_TTL_MS (${lockTtlMs}), or the lease expires between renewals; a renew interval of about a third of the TTL is usual`,
    );
  }
  const timing = leaseTiming(lockTtlMs, renewIntervalMs);
  if (renewIntervalMs + timing.commandTimeoutMs > timing.leaseValidityMs) {
    throw new ConfigError(
      'GRINDER_HA_RENEW_INTERVAL_MS',
      renewRaw,
      `a renewal that starts on time must be able to finish (Redis timeout ${timing.commandTimeoutMs} ms) before the lease deadline (TTL ${lockTtlMs} ms minus a ${timing.safetyMarginMs} ms safety margin); use at most ${timing.leaseValidityMs - timing.commandTimeoutMs} ms, or raise GRINDER_HA_LOCK_TTL_MS`,
    );
  }
}

export function validateLockKey(lockKey: string): void {
  if (/\s/.test(lockKey)) throw new ConfigError('GRINDER_HA_LOCK_KEY', lockKey, 'must not contain white space');
}

export function validateInstanceId(instanceId: string): void {
  if (!/^[A-Za-z0-9_.:@-]{1,128}$/.test(instanceId)) {
    throw new ConfigError('GRINDER_INSTANCE_ID', instanceId, 'must be 1 to 128 characters of letters, digits and _ . : @ -');
  }
}

export function loadConfig(env: Env, argv: readonly string[] = []): Config {
  const haEnabled = readBool(env, 'GRINDER_HA_ENABLED', DEFAULTS.haEnabled);
  const redisUrl = readString(env, 'GRINDER_REDIS_URL', DEFAULTS.redisUrl);
  const redis = validateRedisUrl(redisUrl, env);
  const minReplicas = readMinReplicas(env);

  const lockTtlMs = readInt(env, 'GRINDER_HA_LOCK_TTL_MS', DEFAULTS.lockTtlMs, 1_000, 3_600_000, ' of milliseconds');
  // What an error shows: the value as set, or the default in effect when it is unset or blank.
  const renewSet = env.GRINDER_HA_RENEW_INTERVAL_MS;
  const renewIntervalMs = readInt(env, 'GRINDER_HA_RENEW_INTERVAL_MS', DEFAULTS.renewIntervalMs, 10, 3_600_000, ' of milliseconds');
  const renewRaw = renewSet !== undefined && renewSet.trim() !== '' ? renewSet : String(renewIntervalMs);
  checkLeaseTiming(lockTtlMs, renewIntervalMs, renewRaw);

  const lockKey = readString(env, 'GRINDER_HA_LOCK_KEY', DEFAULTS.lockKey);
  validateLockKey(lockKey);

  const cluster = readString(env, 'GRINDER_CLUSTER', defaultCluster(lockKey));
  if (!CLUSTER_RULE.test(cluster)) {
    throw new ConfigError('GRINDER_CLUSTER', cluster, 'must be 1 to 128 characters of letters, digits and _ . : @ / -');
  }

  const instanceId = readString(env, 'GRINDER_INSTANCE_ID', defaultInstanceId());
  validateInstanceId(instanceId);

  const portArg = metricsPortFromArgs(argv);
  const metricsPort =
    portArg !== undefined ? parseIntInRange('--metrics-port', portArg, 1, 65_535, '') : readInt(env, 'GRINDER_METRICS_PORT', DEFAULTS.metricsPort, 1, 65_535);

  const httpHost = readString(env, 'GRINDER_HTTP_HOST', DEFAULTS.httpHost);
  validateHttpHost(httpHost);
  const advertiseUrl = readAdvertiseUrl(env, metricsPort);

  const levelRaw = readString(env, 'GRINDER_LOG_LEVEL', DEFAULTS.logLevel).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(levelRaw)) {
    throw new ConfigError('GRINDER_LOG_LEVEL', levelRaw, `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const live: LiveConfig = {
    enabled: readBool(env, 'GRINDER_LIVE_ENABLED', DEFAULTS.liveEnabled),
    intervalMs: readInt(env, 'GRINDER_LIVE_INTERVAL_MS', DEFAULTS.liveIntervalMs, 10, 3_600_000, ' of milliseconds'),
    streamKey: readString(env, 'GRINDER_LIVE_STREAM_KEY', leaseKeys(lockKey).liveStream),
    streamMaxLen: readInt(env, 'GRINDER_LIVE_STREAM_MAXLEN', DEFAULTS.liveStreamMaxLen, 1, 100_000_000),
    maxConsecutiveFailures: readInt(env, 'GRINDER_LIVE_MAX_FAILURES', DEFAULTS.liveMaxFailures, 1, 1_000),
  };
  if (/\s/.test(live.streamKey)) throw new ConfigError('GRINDER_LIVE_STREAM_KEY', live.streamKey, 'must not contain white space');
  if (redis.mode === 'cluster' && !sharesLockSlot(lockKey, live.streamKey)) {
    throw new ConfigError(
      'GRINDER_LIVE_STREAM_KEY',
      live.streamKey,
      `on Redis Cluster it must hash to the lock key's slot, because each fenced write checks the lock's keys in one script: put {${lockKey}} in it (the default is ${leaseKeys(lockKey).liveStream})`,
    );
  }

  return {
    haEnabled,
    redisUrl,
    redis,
    minReplicas,
    lockTtlMs,
    renewIntervalMs,
    lockKey,
    cluster,
    instanceId,
    metricsPort,
    httpHost,
    advertiseUrl,
    logLevel: levelRaw as LogLevel,
    live,
  };
}
