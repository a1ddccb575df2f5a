import { errMessage } from '../error-text';
import { randomBytes } from 'node:crypto';
import { formatSwitchoverRequest } from '../ha/lock';
import { findMember, isHealthyStandby, readCluster, type ClusterMember, type ClusterView } from '../cluster/view';
import { shownArgument, withCliRedis, type CliRedis } from './connect';
import type { CliIo } from './index';

export const SWITCHOVER_USAGE = `Usage: grinder switchover [--to ID] [--timeout-ms N]

Moves leadership from the ACTIVE replica to a healthy STANDBY, with no overlap: the leader stops
leading, waits for its leader work to end, and hands the lease to the standby, which takes it at
once with a higher fencing token. Without --to, the standby is the healthy one heard from last.
Refuses (exit 1) when nobody leads, or the target is unknown, the leader itself, or not a healthy
STANDBY (see grinder list). Reads the replicas' GRINDER_* settings.

  --to ID          the instance id to hand leadership to
  --timeout-ms N   how long to wait for the new leader (default: twice the lock TTL + 5 s)
  --help           show this text

Exit codes: 0 switched over; 1 refused, or no new leader in time (what happened is printed);
2 bad usage or configuration.
`;

/** How often the outcome is looked at: well under the gap being measured. */
const POLL_MS = 10;
/** How often the request is published again while the leader has not acted (a message can be lost in a Redis blip). */
const REPUBLISH_MS = 1_000;

interface Options {
  to: string | null;
  timeoutMs: number | null;
}

function parseArgs(args: readonly string[], io: CliIo): Options | number {
  const opts: Options = { to: null, timeoutMs: null };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--help' || arg === '-h') {
      io.stdout(SWITCHOVER_USAGE);
      return 0;
    }
    if (arg === '--to') {
      const value = args[++i];
      if (value === undefined || value === '' || value.startsWith('-')) {
        io.stderr('grinder switchover: --to needs the instance id of a STANDBY (grinder list shows them)\n');
        return 2;
      }
      opts.to = value;
      continue;
    }
    if (arg === '--timeout-ms') {
      const value = args[++i];
      if (value === undefined || !/^\d+$/.test(value) || Number(value) < 100 || Number(value) > 7_200_000) {
        io.stderr(`grinder switchover: --timeout-ms ${JSON.stringify(value ?? '')}: must be a whole number of ms from 100 to 7200000\n`);
        return 2;
      }
      opts.timeoutMs = Number(value);
      continue;
    }
    io.stderr(`grinder switchover: unknown option ${shownArgument(arg)}\n\n${SWITCHOVER_USAGE}`);
    return 2;
  }
  return opts;
}

function describe(m: ClusterMember): string {
  return `role ${m.role}, health ${m.health}, last seen ${m.last_seen_ms} ms ago`;
}

/** The standby to hand over to, or why there is none. */
export function chooseTarget(view: ClusterView, to: string | null): { target: ClusterMember } | { refusal: string } {
  const leader = view.leader as string;
  if (to !== null) {
    if (to === leader) return { refusal: `${to} already leads; name a STANDBY (grinder list shows them)` };
    const m = findMember(view, to);
    if (!m) {
      const known = view.members.map((x) => x.instance_id).join(', ') || 'none';
      return { refusal: `unknown member ${JSON.stringify(to)}: no live registration under that id (registered: ${known}); check the id with grinder list` };
    }
    if (!isHealthyStandby(m)) return { refusal: `${to} is not a healthy STANDBY (${describe(m)}); fix it first or choose another member` };
    return { target: m };
  }
  const candidates = view.members.filter(isHealthyStandby).sort((a, b) => a.last_seen_ms - b.last_seen_ms || a.instance_id.localeCompare(b.instance_id));
  const first = candidates[0];
  if (!first) return { refusal: 'no healthy STANDBY to switch over to (grinder list shows every member and its health); start or fix a replica first' };
  return { target: first };
}

export async function runSwitchover(args: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(args, io);
  if (typeof parsed === 'number') return parsed;
  return withCliRedis('switchover', io, (redis) => switchover(redis, parsed, io));
}

async function switchover(redis: CliRedis, opts: Options, io: CliIo): Promise<number> {
  const { client, keys, config } = redis;
  const fail = (message: string): number => {
    io.stderr(`grinder switchover: ${message}\n`);
    return 1;
  };
  let view: ClusterView;
  try {
    view = await readCluster(client, keys, config.lockKey);
  } catch (err) {
    return fail(`could not read the cluster view: ${errMessage(err)}; check that Redis is reachable and retry`);
  }
  const leader = view.leader;
  const oldToken = view.lease.token;
  if (leader === null || oldToken === null) {
    return fail(`nobody leads right now (lease record ${view.lease.state}); there is nothing to switch over: wait for a leader (grinder list)`);
  }
  const leaderMember = findMember(view, leader);
  if (!leaderMember || leaderMember.health === 'late') {
    return fail(
      `the leader ${leader} does not heartbeat (stopped, or cut off from Redis?); a switchover needs a live leader, and its lease runs out by itself`,
    );
  }
  const choice = chooseTarget(view, opts.to);
  if ('refusal' in choice) return fail(choice.refusal);
  const target = choice.target.instance_id;
  const timeoutMs = opts.timeoutMs ?? 2 * config.lockTtlMs + 5_000;

  const request = formatSwitchoverRequest({ id: randomBytes(6).toString('hex'), from: leader, token: oldToken, to: target });
  const started = Date.now();
  let publishedAt = 0;
  let lastState = '';
  while (Date.now() - started < timeoutMs) {
    let current: ClusterView | null = null;
    try {
      current = await readCluster(client, keys, config.lockKey);
    } catch {
      // A Redis blip: the request may still be carried out; look again.
    }
    if (current) {
      const { lease } = current;
      lastState = `${lease.state} ${lease.instance_id ?? ''} token ${lease.token ?? '-'}`;
      const stillOld = lease.state === 'held' && lease.instance_id === leader && lease.token === oldToken;
      if (lease.state === 'held' && !stillOld && lease.token !== null && lease.token > oldToken) {
        if (lease.instance_id === target) {
          io.stdout(`switched over: ${leader} (token ${oldToken}) -> ${target} (token ${lease.token}) in ${Date.now() - started} ms\n`);
          return 0;
        }
        return fail(`leadership moved to ${lease.instance_id} (token ${lease.token}), not to ${target}: did ${target} stop meanwhile? (grinder list)`);
      }
      if (stillOld && Date.now() - publishedAt >= REPUBLISH_MS) {
        try {
          await client.publish(keys.events, request);
          publishedAt = Date.now();
        } catch {
          // Not delivered: the next round publishes it again.
        }
      }
      if (!stillOld && lease.state !== 'handoff' && lease.state !== 'held') {
        return fail(`the lease left ${leader} but was not handed over (record ${lease.state}); a STANDBY takes it over by itself (grinder list)`);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return fail(
    `no new leader within ${timeoutMs} ms (lease record: ${lastState}); if it names ${target} as handoff, ${target} did not take it and any STANDBY takes it over one TTL after the handoff; if ${leader} still holds it, its leader work did not end in time`,
  );
}
