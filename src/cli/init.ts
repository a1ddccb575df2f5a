import { errMessage } from '../error-text';
import { ReplyCode } from '../ha/replies';
import { shownArgument, withCliRedis, type CliRedis } from './connect';
import type { CliIo } from './index';

/** How long a declaration stands when no replica uses it: long enough for the replicas to start. */
export const DEFAULT_INIT_WINDOW_MS = 60_000;

export const INIT_USAGE = `Usage: grinder init [--window-ms N]

Declares a brand-new cluster: on a Redis where GRINDER has left nothing for the lock key (no lease
record, token counter or fence), the first replica to start leads at once instead of after the
one-TTL barrier that guards against lost data. Run it once, before the replicas' first start.
Harmless afterwards: where GRINDER data exists it changes nothing and says so (exit 0). A Redis
that loses its data later gets the barrier again. Reads the replicas' GRINDER_* settings.

  --window-ms N   how long the declaration stands if no replica uses it (default ${DEFAULT_INIT_WINDOW_MS}, 1000 to 3600000)
  --help          show this text

Exit codes: 0 declared or nothing to do; 1 Redis could not be reached; 2 bad usage or configuration.
`;

export async function runInit(args: readonly string[], io: CliIo): Promise<number> {
  let windowMs = DEFAULT_INIT_WINDOW_MS;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--help' || arg === '-h') {
      io.stdout(INIT_USAGE);
      return 0;
    }
    if (arg === '--window-ms') {
      const value = args[++i];
      const n = Number(value);
      if (value === undefined || !/^\d+$/.test(value) || n < 1_000 || n > 3_600_000) {
        io.stderr(`grinder init: --window-ms ${JSON.stringify(value ?? '')}: must be a whole number of ms from 1000 to 3600000\n`);
        return 2;
      }
      windowMs = n;
      continue;
    }
    io.stderr(`grinder init: unknown option ${shownArgument(arg)}; settings come from GRINDER_* environment variables\n\n${INIT_USAGE}`);
    return 2;
  }

  return withCliRedis('init', io, (redis) => declare(redis, windowMs, io));
}

async function declare(redis: CliRedis, windowMs: number, io: CliIo): Promise<number> {
  const { keys, config } = redis;
  try {
    const reply = await redis.client.grinderDeclare(keys.record, keys.counter, keys.fence, keys.init, windowMs);
    if (reply[0] === ReplyCode.declared) {
      io.stdout(
        `declared a brand-new GRINDER cluster for lock key ${config.lockKey}: the first replica that starts within ${windowMs / 1000} s leads at once\n`,
      );
      return 0;
    }
    io.stdout(
      `nothing to do: the lock key ${config.lockKey} already has its ${String(reply[1])} (GRINDER has run here before), so this is not a brand-new cluster; the replicas elect a leader without init\n`,
    );
    return 0;
  } catch (err) {
    io.stderr(`grinder init: Redis refused the declaration: ${errMessage(err)}; check that Redis is reachable and writable and retry\n`);
    return 1;
  }
}
