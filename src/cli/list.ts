import { errMessage } from '../error-text';
import { formatClusterTable } from '../cluster/table';
import { readCluster } from '../cluster/view';
import { shownArgument, withCliRedis } from './connect';
import type { CliIo } from './index';

export const LIST_USAGE = `Usage: grinder list [--json]

Shows every replica registered for the lock key: member, role (the lease record decides who is
Leader), fencing token, lease left, last seen, health, version and HTTP address. Reads Redis with
the replicas' GRINDER_* settings (GRINDER_REDIS_URL, GRINDER_HA_LOCK_KEY, ...), so run it with
their environment, e.g. docker exec grinder_live_1 node dist/main.js list

  --json    print the view as JSON, the same document GET /cluster answers
  --help    show this text

Exit codes: 0 shown; 1 Redis could not be reached or read; 2 bad usage or configuration.
`;

export async function runList(args: readonly string[], io: CliIo): Promise<number> {
  let json = false;
  for (const arg of args) {
    if (arg === '--json') json = true;
    else if (arg === '--help' || arg === '-h') {
      io.stdout(LIST_USAGE);
      return 0;
    } else {
      io.stderr(`grinder list: unknown option ${shownArgument(arg)}; settings come from GRINDER_* environment variables\n\n${LIST_USAGE}`);
      return 2;
    }
  }

  return withCliRedis('list', io, async (redis) => {
    try {
      const view = await readCluster(redis.client, redis.keys, redis.config.lockKey);
      if (json) {
        io.stdout(`${JSON.stringify(view, null, 2)}\n`);
      } else {
        io.stdout(formatClusterTable(view, { cluster: redis.config.cluster, width: terminalWidth(io.env) }));
      }
      return 0;
    } catch (err) {
      io.stderr(
        `grinder list: could not read the cluster view from Redis: ${errMessage(err)}; check that Redis is reachable with GRINDER_REDIS_URL and retry\n`,
      );
      return 1;
    }
  });
}

/** COLUMNS when set, else the terminal's width; a pipe has none, so scripts get every column. */
function terminalWidth(env: Record<string, string | undefined>): number | undefined {
  const columns = Number(env.COLUMNS);
  if (Number.isInteger(columns) && columns > 0) return columns;
  return process.stdout.isTTY ? process.stdout.columns : undefined;
}
