import {
  checkLeaseTiming,
  ConfigError,
  DEFAULTS,
  defaultInstanceId,
  parseIntInRange,
  readMinReplicas,
  validateInstanceId,
  validateLockKey,
  validateRedisUrl,
  type Config,
} from '../config';
import type { RedisTarget } from '../redis/target';
import { InvalidOptionError } from './errors';
import type { ElectorLogger, ElectorOptions, RoleChange } from './types';

/** createElector's options after validation, with every default filled in. */
export interface ElectorSettings {
  redisUrl: string;
  target: RedisTarget;
  lockKey: string;
  instanceId: string;
  ttlMs: number;
  renewIntervalMs: number;
  minReplicas: number | 'auto';
  stopGraceMs: number;
  logger: ElectorLogger | null;
  onRoleChange: ((change: RoleChange) => void) | null;
}

/** The stop grace the service has always used (LeaderElector.stop's default; the watchdog counts it). */
export const DEFAULT_STOP_GRACE_MS = 2_000;

/**
 * The rules are config.ts's, which name environment variables; a library user set options. Every
 * variable a rule can mention is named here by its option.
 */
const OPTION_OF: Readonly<Record<string, keyof ElectorOptions>> = {
  GRINDER_REDIS_URL: 'redisUrl',
  GRINDER_HA_LOCK_KEY: 'lockKey',
  GRINDER_INSTANCE_ID: 'instanceId',
  GRINDER_HA_LOCK_TTL_MS: 'ttlMs',
  GRINDER_HA_RENEW_INTERVAL_MS: 'renewIntervalMs',
  GRINDER_REDIS_MIN_REPLICAS: 'minReplicas',
  GRINDER_REDIS_SENTINEL_USERNAME: 'sentinelUsername',
  GRINDER_REDIS_SENTINEL_PASSWORD: 'sentinelPassword',
};

const KNOWN: ReadonlySet<string> = new Set<keyof ElectorOptions>([
  'redisUrl',
  'lockKey',
  'instanceId',
  'ttlMs',
  'renewIntervalMs',
  'minReplicas',
  'sentinelUsername',
  'sentinelPassword',
  'stopGraceMs',
  'logger',
  'onRoleChange',
]);

/** config.ts's error, told in options: the option's name, and the value quoted only when it was a string. */
function asOptionError(err: ConfigError, options: ElectorOptions): InvalidOptionError {
  const option = OPTION_OF[err.variable] ?? err.variable;
  let rule = err.rule;
  for (const [variable, name] of Object.entries(OPTION_OF)) rule = rule.split(variable).join(name);
  // err.value is the text config.ts may show (a Redis URL without its password), never the raw option.
  const raw: unknown = (options as unknown as Record<string, unknown>)[option];
  return new InvalidOptionError(option, typeof raw === 'string' ? JSON.stringify(err.value) : err.value, rule);
}

/** Numbers as written; strings quoted, so that an empty or padded value is visible. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (typeof value === 'function') return '<function>';
  return Array.isArray(value) ? '<array>' : '<object>';
}

/** A whole number option, with config.ts's rule (and message) for its variable. */
function intOption(option: string, variable: string, value: unknown, fallback: number, min: number, max: number, unit: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new InvalidOptionError(option, show(value), `must be a whole number${unit} from ${min} to ${max}`);
  return parseIntInRange(variable, String(value), min, max, unit);
}

/** Options whose value is a secret (or may hold one): an error names their type, never their value. */
const SECRET_OPTIONS: ReadonlySet<string> = new Set(['sentinelPassword', 'sentinelUsername']);

function stringOption(option: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InvalidOptionError(option, SECRET_OPTIONS.has(option) ? `<a ${typeof value}>` : show(value), 'must be a string');
  return value;
}

/** Validates createElector's options up front, with the rules GRINDER_* variables follow, and fills in the defaults. */
export function resolveOptions(options: ElectorOptions): ElectorSettings {
  // Type-checked callers cannot get these wrong; JavaScript callers can, and deserve the same clear answer.
  const given: unknown = options;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new InvalidOptionError(
      'options',
      show(given),
      'createElector(options) needs an options object with at least redisUrl, e.g. createElector({ redisUrl: "redis://localhost:6379/0" })',
    );
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      // Never the value: a misspelt password option would put the password into the error (and the logs).
      throw new InvalidOptionError(key, '<not shown>', `unknown option; the options are ${[...KNOWN].join(', ')}`);
    }
  }
  try {
    return resolve(options);
  } catch (err) {
    if (err instanceof ConfigError) throw asOptionError(err, options);
    throw err;
  }
}

function resolve(o: ElectorOptions): ElectorSettings {
  const redisUrl = stringOption('redisUrl', o.redisUrl);
  if (redisUrl === undefined || redisUrl.trim() === '') {
    throw new InvalidOptionError('redisUrl', show(o.redisUrl), 'is required: the Redis that holds the lease, e.g. redis://localhost:6379/0');
  }
  const sentinelUsername = stringOption('sentinelUsername', o.sentinelUsername);
  const sentinelPassword = stringOption('sentinelPassword', o.sentinelPassword);
  // parseRedisTarget takes the Sentinels' credentials the way the service gets them: as variables.
  const target = validateRedisUrl(redisUrl.trim(), {
    GRINDER_REDIS_SENTINEL_USERNAME: sentinelUsername,
    GRINDER_REDIS_SENTINEL_PASSWORD: sentinelPassword,
  });
  if ((sentinelUsername !== undefined || sentinelPassword !== undefined) && target.mode !== 'sentinel') {
    throw new InvalidOptionError(
      sentinelPassword !== undefined ? 'sentinelPassword' : 'sentinelUsername',
      '***',
      "only a redis+sentinel:// (or rediss+sentinel://) redisUrl has Sentinels; the data nodes' user and password go into the URL itself",
    );
  }

  let minReplicas: number | 'auto' = 'auto';
  if (o.minReplicas !== undefined) {
    if (typeof o.minReplicas !== 'number' && o.minReplicas !== 'auto') {
      throw new InvalidOptionError('minReplicas', show(o.minReplicas), "must be 'auto' or a whole number from 0 to 16");
    }
    minReplicas = readMinReplicas({ GRINDER_REDIS_MIN_REPLICAS: String(o.minReplicas) });
  }

  const ttlMs = intOption('ttlMs', 'GRINDER_HA_LOCK_TTL_MS', o.ttlMs, DEFAULTS.lockTtlMs, 1_000, 3_600_000, ' of milliseconds');
  // The service's 3000 with the default TTL; a shorter TTL alone must not make the default invalid.
  const renewDefault = Math.min(DEFAULTS.renewIntervalMs, Math.floor(ttlMs / 3));
  const renewIntervalMs = intOption('renewIntervalMs', 'GRINDER_HA_RENEW_INTERVAL_MS', o.renewIntervalMs, renewDefault, 10, 3_600_000, ' of milliseconds');
  checkLeaseTiming(ttlMs, renewIntervalMs, String(renewIntervalMs));

  const lockKey = stringOption('lockKey', o.lockKey) ?? DEFAULTS.lockKey;
  if (lockKey === '') throw new InvalidOptionError('lockKey', '""', 'must not be empty; leave it out for the default grinder:leader:lock');
  validateLockKey(lockKey);

  const instanceId = stringOption('instanceId', o.instanceId) ?? defaultInstanceId();
  validateInstanceId(instanceId);

  const stopGraceMs = intOption('stopGraceMs', 'stopGraceMs', o.stopGraceMs, DEFAULT_STOP_GRACE_MS, 0, 3_600_000, ' of milliseconds');

  const logger = o.logger ?? null;
  if (logger !== null) {
    const methods = ['debug', 'info', 'warn', 'error'] as const;
    const given: unknown = logger;
    const missing =
      typeof given === 'object' && given !== null ? methods.filter((m) => typeof (given as Record<string, unknown>)[m] !== 'function') : [...methods];
    if (missing.length > 0) {
      throw new InvalidOptionError(
        'logger',
        show(given),
        `must have debug, info, warn and error methods taking (fields, message), like a pino, bunyan or console logger; missing: ${missing.join(', ')}`,
      );
    }
  }
  const onRoleChange = o.onRoleChange ?? null;
  if (onRoleChange !== null && typeof onRoleChange !== 'function') {
    throw new InvalidOptionError('onRoleChange', show(onRoleChange), 'must be a function ({ from, to }) => void');
  }

  return { redisUrl: redisUrl.trim(), target, lockKey, instanceId, ttlMs, renewIntervalMs, minReplicas, stopGraceMs, logger, onRoleChange };
}

/** The service's settings as createElector's: the service validated them already (config.ts, same rules). */
export function settingsFromConfig(config: Config): ElectorSettings {
  return {
    redisUrl: config.redisUrl,
    target: config.redis,
    lockKey: config.lockKey,
    instanceId: config.instanceId,
    ttlMs: config.lockTtlMs,
    renewIntervalMs: config.renewIntervalMs,
    minReplicas: config.minReplicas,
    stopGraceMs: DEFAULT_STOP_GRACE_MS,
    logger: null,
    onRoleChange: null,
  };
}
