import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { leaseTiming } from './ha/timing';

/**
 * Start-up configuration, from environment variables (and `--metrics-port N`). Everything is
 * validated here, before anything starts, so a bad value stops the process with one line that
 * names the variable, the value and the rule instead of failing later in some other way.
 */
export interface Config {
  haEnabled: boolean;
  redisUrl: string;
  lockTtlMs: number;
  renewIntervalMs: number;
  lockKey: string;
  instanceId: string;
  metricsPort: number;
  httpHost: string;
  logLevel: LogLevel;
  live: LiveConfig;
}

export interface LiveConfig {
  enabled: boolean;
  intervalMs: number;
  streamKey: string;
  streamMaxLen: number;
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

function parseIntInRange(name: string, raw: string, min: number, max: number, unit: string): number {
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

/** Where the Redis URL points, for diagnostics and span attributes; never the credentials. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  tls: boolean;
}

export function redisTarget(url: string): RedisTarget {
  const u = new URL(url);
  const dbText = u.pathname.replace(/^\//, '') || u.searchParams.get('db') || '0';
  return {
    // new URL() keeps the brackets of an IPv6 literal; clients and semantic conventions want without.
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 6379 : Number(u.port),
    db: Number(dbText),
    tls: u.protocol === 'rediss:',
  };
}

function validateRedisUrl(raw: string): void {
  const name = 'GRINDER_REDIS_URL';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    // The value may carry a password; show its shape only.
    throw new ConfigError(name, '<unparsable>', 'must be a URL such as redis://[:password@]host:6379/0 or rediss://…');
  }
  const shown = redactRedisUrl(raw);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(name, shown, 'the scheme must be redis:// or rediss:// (TLS)');
  }
  if (u.hostname === '') throw new ConfigError(name, shown, 'the URL must name a host, e.g. redis://redis:6379/0');
  if (u.username !== '' && !raw.slice(0, raw.indexOf('@')).slice(u.protocol.length + 2).includes(':')) {
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
      throw new ConfigError('argument', shown, 'unknown argument; the only option is --metrics-port N (everything else is configured through GRINDER_* environment variables)');
    }
  }
  return port;
}

export function loadConfig(env: Env, argv: readonly string[] = []): Config {
  const haEnabled = readBool(env, 'GRINDER_HA_ENABLED', DEFAULTS.haEnabled);
  const redisUrl = readString(env, 'GRINDER_REDIS_URL', DEFAULTS.redisUrl);
  validateRedisUrl(redisUrl);

  const lockTtlMs = readInt(env, 'GRINDER_HA_LOCK_TTL_MS', DEFAULTS.lockTtlMs, 1_000, 3_600_000, ' of milliseconds');
  // What an error shows: the value as set, or the default in effect when it is unset or blank.
  const renewSet = env.GRINDER_HA_RENEW_INTERVAL_MS;
  const renewIntervalMs = readInt(env, 'GRINDER_HA_RENEW_INTERVAL_MS', DEFAULTS.renewIntervalMs, 10, 3_600_000, ' of milliseconds');
  const renewRaw = renewSet !== undefined && renewSet.trim() !== '' ? renewSet : String(renewIntervalMs);
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

  const lockKey = readString(env, 'GRINDER_HA_LOCK_KEY', DEFAULTS.lockKey);
  if (/\s/.test(lockKey)) throw new ConfigError('GRINDER_HA_LOCK_KEY', lockKey, 'must not contain white space');

  const instanceId = readString(env, 'GRINDER_INSTANCE_ID', defaultInstanceId());
  if (!/^[A-Za-z0-9_.:@-]{1,128}$/.test(instanceId)) {
    throw new ConfigError('GRINDER_INSTANCE_ID', instanceId, 'must be 1 to 128 characters of letters, digits and _ . : @ -');
  }

  const portArg = metricsPortFromArgs(argv);
  const metricsPort =
    portArg !== undefined
      ? parseIntInRange('--metrics-port', portArg, 1, 65_535, '')
      : readInt(env, 'GRINDER_METRICS_PORT', DEFAULTS.metricsPort, 1, 65_535);

  const httpHost = readString(env, 'GRINDER_HTTP_HOST', DEFAULTS.httpHost);
  validateHttpHost(httpHost);

  const levelRaw = readString(env, 'GRINDER_LOG_LEVEL', DEFAULTS.logLevel).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(levelRaw)) {
    throw new ConfigError('GRINDER_LOG_LEVEL', levelRaw, `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const live: LiveConfig = {
    enabled: readBool(env, 'GRINDER_LIVE_ENABLED', DEFAULTS.liveEnabled),
    intervalMs: readInt(env, 'GRINDER_LIVE_INTERVAL_MS', DEFAULTS.liveIntervalMs, 10, 3_600_000, ' of milliseconds'),
    streamKey: readString(env, 'GRINDER_LIVE_STREAM_KEY', `${lockKey}:live`),
    streamMaxLen: readInt(env, 'GRINDER_LIVE_STREAM_MAXLEN', DEFAULTS.liveStreamMaxLen, 1, 100_000_000),
  };

  return {
    haEnabled,
    redisUrl,
    lockTtlMs,
    renewIntervalMs,
    lockKey,
    instanceId,
    metricsPort,
    httpHost,
    logLevel: levelRaw as LogLevel,
    live,
  };
}
