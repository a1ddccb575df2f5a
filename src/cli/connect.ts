import { ConfigError, loadConfig, redactRedisUrl, type Config } from '../config';
import { defineCommands } from '../redis/commands';
import { createLeaseClient, type LeaseClient } from '../redis/connection';
import { isSelectRefusal } from '../redis-diagnose';
import { leaseKeys, type LeaseKeys } from '../redis/keys';

/** How long an operator command waits for Redis before it gives up and says so. */
const CONNECT_WITHIN_MS = 5_000;
/** Operator commands are not in a lease's hurry: one answer may take this long. */
const COMMAND_TIMEOUT_MS = 2_000;

/** A Redis connection for an operator command, with the cluster's settings. */
export interface CliRedis {
  readonly config: Config;
  readonly client: LeaseClient;
  readonly keys: LeaseKeys;
  close(): Promise<void>;
}

/** The replicas' settings as an operator command reads them (the same variables, HA implied). */
export function cliConfig(env: Record<string, string | undefined>): Config {
  return loadConfig({ ...env, GRINDER_HA_ENABLED: 'true' });
}

/**
 * Connects with the same GRINDER_* variables the replicas use. Throws CliError with what to check
 * when the settings are refused or Redis cannot be reached within a few seconds.
 */
export async function openCliRedis(env: Record<string, string | undefined>): Promise<CliRedis> {
  let config: Config;
  try {
    config = cliConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
  const client = createLeaseClient(config.redis, COMMAND_TIMEOUT_MS);
  defineCommands(client);
  let lastError: Error | null = null;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  const close = async (): Promise<void> => {
    client.disconnect();
  };
  const ready = await new Promise<boolean>((resolve) => {
    if (client.status === 'ready') {
      resolve(true);
      return;
    }
    const timer = setTimeout(() => resolve(false), CONNECT_WITHIN_MS);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve(true);
    });
    // Refused credentials do not get better by waiting.
    client.on('error', (err: Error) => {
      if (!isCredentialRefusal(err)) return;
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!ready && lastError !== null && isCredentialRefusal(lastError)) {
    await close();
    throw new CliError(
      `Redis at ${redactRedisUrl(config.redisUrl)} refused the credentials in GRINDER_REDIS_URL (${(lastError as Error).message.split(' ')[0]}); use the user and password the replicas use`,
      2,
    );
  }
  if (!ready) {
    await close();
    const why = lastError ? `: ${(lastError as Error).message}` : '';
    throw new CliError(
      `cannot reach Redis at ${redactRedisUrl(config.redisUrl)} within ${CONNECT_WITHIN_MS / 1000} s${why}; check GRINDER_REDIS_URL (run the command with the replicas' environment)`,
      1,
    );
  }
  // ioredis reports a refused SELECT as an error event around 'ready' (from a promise callback, so
  // possibly just after it) and goes on with database 0, where this command would read another cluster.
  await new Promise((resolve) => setImmediate(resolve));
  if (lastError !== null && isSelectRefusal(lastError)) {
    await close();
    throw new CliError(
      `Redis at ${redactRedisUrl(config.redisUrl)} refused the database in GRINDER_REDIS_URL (${(lastError as Error).message}); use the database the replicas use (0 to 15, within the server's \`databases\`)`,
      2,
    );
  }
  return { config, client, keys: leaseKeys(config.lockKey), close };
}

/** An operator command's failure: the message to print and the exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * Runs `command` with a connection opened from the replicas' settings and closes it afterwards.
 * A connection that cannot be opened is reported as `grinder <name>: …` with its exit code.
 */
export async function withCliRedis(
  name: string,
  io: { env: Record<string, string | undefined>; stderr: (text: string) => void },
  command: (redis: CliRedis) => Promise<number>,
): Promise<number> {
  let redis: CliRedis;
  try {
    redis = await openCliRedis(io.env);
  } catch (err) {
    if (err instanceof CliError) {
      io.stderr(`grinder ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
  try {
    return await command(redis);
  } finally {
    await redis.close();
  }
}

/**
 * What to print for an argument a command does not know: the option name only, since a mistyped
 * `--redis-url=redis://:secret@…` must not be echoed.
 */
export function shownArgument(arg: string): string {
  return arg.startsWith('-') ? arg.replace(/=.*$/s, '=…') : '<argument>';
}

function isCredentialRefusal(err: Error): boolean {
  return /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(err.message);
}
