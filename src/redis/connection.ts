import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisTarget } from './target';

/**
 * The Redis clients the lease uses, for each kind of target. Every lease call stays bounded and
 * honest (see leaseConnectionOptions); a reply saying this node is not (or no longer) the master
 * makes the client drop the connection and find the master again at once.
 */
export type LeaseClient = Redis | Cluster;

/** READONLY (a demoted master), LOADING (a restarting one), MASTERDOWN (a replica without its master). */
export function isFailoverReply(err: Error): boolean {
  return /^(READONLY|LOADING|MASTERDOWN)\b/.test(err.message);
}

const reconnectOnError = (err: Error): 1 | false => (isFailoverReply(err) ? 1 : false);
const quickRetry = (times: number): number => Math.min(50 * times, 250);

/**
 * How long disconnect() waits for a socket to close before destroying it. ioredis' 2 s default
 * kept a process that stopped while Redis was unreachable alive for 2 s more (its timer waits for
 * a close that a refused socket already had). Nothing is pending by then: stop() awaited the
 * release.
 */
const DISCONNECT_GRACE_MS = 100;

/**
 * - no offline queue and no retries per request: a call made while disconnected fails at once
 *   instead of running later, when its answer would no longer mean what the elector thinks;
 * - no re-sending of in-flight commands after a reconnect, for the same reason;
 * - a command timeout well inside the lease, so a renew never waits past the lease deadline;
 * - fast reconnects (at most 250 ms apart) so a returning Redis is noticed within a second;
 * - a short disconnect grace (DISCONNECT_GRACE_MS).
 */
export function leaseConnectionOptions(commandTimeoutMs: number): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(commandTimeoutMs, 500),
    retryStrategy: quickRetry,
    reconnectOnError,
    lazyConnect: false,
    disconnectTimeout: DISCONNECT_GRACE_MS,
  };
}

function credentials(t: RedisTarget): RedisOptions {
  return {
    ...(t.username ? { username: t.username } : {}),
    ...(t.password ? { password: t.password } : {}),
    ...(t.tls ? { tls: {} } : {}),
  };
}

function sentinelOptions(t: Extract<RedisTarget, { mode: 'sentinel' }>): RedisOptions {
  return {
    sentinels: t.sentinels,
    name: t.masterName,
    db: t.db,
    role: 'master',
    // Reconnect to the new master as soon as the Sentinels announce it.
    failoverDetector: true,
    sentinelRetryStrategy: quickRetry,
    enableTLSForSentinelMode: t.tls,
    ...(t.sentinelUsername ? { sentinelUsername: t.sentinelUsername } : {}),
    ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
  };
}

function clusterOptions(t: Extract<RedisTarget, { mode: 'cluster' }>, redisOptions: RedisOptions, offlineQueue: boolean): ClusterOptions {
  const { retryStrategy: _ignored, enableOfflineQueue: _ignoredToo, ...perNode } = redisOptions;
  void _ignored;
  void _ignoredToo;
  return {
    enableOfflineQueue: offlineQueue,
    clusterRetryStrategy: quickRetry,
    retryDelayOnFailover: 50,
    retryDelayOnClusterDown: 50,
    retryDelayOnTryAgain: 50,
    slotsRefreshTimeout: Math.max(500, Number(perNode.commandTimeout ?? 1_000)),
    redisOptions: { ...perNode, ...credentials(t) },
  };
}

function createClient(t: RedisTarget, opts: RedisOptions, offlineQueue: boolean): LeaseClient {
  switch (t.mode) {
    case 'standalone':
      return new Redis(t.url, opts);
    case 'sentinel':
      return new Redis({ ...opts, ...credentials(t), ...sentinelOptions(t) });
    case 'cluster':
      return new Cluster(t.nodes, clusterOptions(t, opts, offlineQueue));
  }
}

/** The connection lease scripts and fenced writes run on. */
export function createLeaseClient(t: RedisTarget, commandTimeoutMs: number): LeaseClient {
  return createClient(t, leaseConnectionOptions(commandTimeoutMs), false);
}

/**
 * The connection announcements arrive on. They are hints, never a source of truth, so it may
 * queue its SUBSCRIBE until Redis is there and resubscribes after every reconnect.
 */
export function createSubscriber(t: RedisTarget, commandTimeoutMs: number): LeaseClient {
  return createClient(
    t,
    { connectTimeout: Math.max(commandTimeoutMs, 500), retryStrategy: quickRetry, maxRetriesPerRequest: null, disconnectTimeout: DISCONNECT_GRACE_MS },
    true,
  );
}

/**
 * The node a key's commands run on: the connection itself, or in a cluster the master that
 * serves the key's slot (WAIT and ROLE must go there, not to a random node).
 */
export function nodeFor(client: LeaseClient, key: string): Redis | null {
  if (client instanceof Redis) return client;
  const owner = client.slots[calculateSlot(key)]?.[0];
  if (!owner) return null;
  return client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner) ?? null;
}

/** "host:port" of the server a connection talks to, or null while it has none. */
export function addressOf(node: Redis | null): string | null {
  if (!node) return null;
  const s = node.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (s?.remoteAddress && s.remotePort) return `${s.remoteAddress}:${s.remotePort}`;
  return node.options.host && node.options.port ? `${node.options.host}:${node.options.port}` : null;
}
