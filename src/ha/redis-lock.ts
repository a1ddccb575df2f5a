import { randomBytes } from 'node:crypto';
import { ReplyError } from 'ioredis';
import { defineCommands, UnexpectedReplyError } from '../redis/commands';
import { addressOf, createLeaseClient, createSubscriber, isFailoverReply, nodeFor, type LeaseClient } from '../redis/connection';
import { leaseKeys, type LeaseKeys } from '../redis/keys';
import type { RedisTarget } from '../redis/target';
import {
  LockUnavailableError,
  parseAnnouncement,
  parseSwitchoverRequest,
  type AcquireRequest,
  type AcquireResult,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type LockOperation,
  type ReleaseResult,
  type RenewResult,
  type StoreFacts,
} from './lock';
import { mapAcquireReply, mapReleaseReply, mapRenewReply } from './replies';
import { errMessage } from '../error-text';

export interface RedisLeaseLockOptions {
  target: RedisTarget;
  /**
   * Replicas that must acknowledge every lease write (WAIT) before it counts: a number, or 'auto'.
   * Only Sentinel and Cluster promote replicas, so only there does 'auto' wait for any: one, once
   * the master serving the lock key was seen with a replica (see requiredReplicas).
   */
  minReplicas: number | 'auto';
  lockKey: string;
  instanceId: string;
  /** Random hex naming this process incarnation; part of the lease record. */
  session: string;
  ttlMs: number;
  commandTimeoutMs: number;
  /** Called with connection errors, which ioredis reports as events rather than rejections. */
  onConnectionError?: (err: Error) => void;
  /** Called after every connect with what Redis said about its eviction policy and durability. */
  onFacts?: (facts: StoreFacts) => void;
  /** Called after every lease write that needed replica acknowledgements: whether it got them. */
  onReplication?: (acked: boolean) => void;
}

/** A new random record version. */
export const newVersion = (): string => randomBytes(8).toString('hex');

export class RedisLeaseLock implements LeaseLock {
  readonly lockKey: string;
  readonly keys: LeaseKeys;
  private readonly redis: LeaseClient;
  private readonly subscriber: LeaseClient;
  private readonly listeners: ((event: LockEvent) => void)[] = [];
  private readonly opts: RedisLeaseLockOptions;
  private storeFacts: StoreFacts;
  private closed = false;
  private factsRead: Promise<void> = Promise.resolve();
  /**
   * The most replicas (ROLE) seen connected to the current master of the lock key, for
   * minReplicas 'auto'. A high-water mark, forgotten only when the master changes: a master cut
   * off from its replicas must not start counting writes none of them has.
   */
  private replicasSeen = 0;
  private lastMaster: string | null = null;
  private replicaTimer: NodeJS.Timeout | null = null;

  constructor(opts: RedisLeaseLockOptions) {
    this.opts = opts;
    this.lockKey = opts.lockKey;
    this.keys = leaseKeys(opts.lockKey);
    this.storeFacts = { maxmemoryPolicy: null, durable: null, mode: opts.target.mode, master: null, masterChanges: 0, replicasAcked: null };
    this.redis = createLeaseClient(opts.target, opts.commandTimeoutMs);
    defineCommands(this.redis);
    this.redis.on('error', (err: Error) => opts.onConnectionError?.(err));
    this.redis.on('ready', () => {
      // The elector's first decision after a connect depends on the durability it reports.
      this.factsRead = this.readFacts().finally(() => this.emit({ kind: 'connected' }));
    });
    this.redis.on('close', () => this.emit({ kind: 'disconnected' }));
    this.keepConnecting(this.redis);

    // Announcements make takeovers prompt; they are never a source of truth, so this connection
    // may queue its SUBSCRIBE until Redis is there and resubscribe after every reconnect.
    this.subscriber = createSubscriber(opts.target, opts.commandTimeoutMs);
    this.subscriber.on('error', () => {
      // The command connection reports the same outage; one report is enough.
    });
    this.subscriber.on('close', () => this.emit({ kind: 'disconnected' }));
    this.keepConnecting(this.subscriber);
    this.subscriber.on('message', (_channel: string, message: string) => {
      const announcement = parseAnnouncement(message);
      if (announcement) {
        this.emit({ kind: 'announcement', announcement });
        return;
      }
      const request = parseSwitchoverRequest(message);
      if (request) this.emit({ kind: 'switchover', request });
    });
    // Until the subscription stands, announcements are missed, and a standby would learn of a
    // renewal only at its next look, starting its wait late: look again once it stands.
    this.subscriber.subscribe(this.keys.events).then(
      () => this.subscriptionStands(),
      () => {
        // Only fails when closed during start-up; autoResubscribe covers reconnects.
      },
    );
    this.subscriber.on('ready', () => {
      // After a reconnect ioredis resubscribes right after 'ready'; give it that moment.
      setTimeout(() => this.subscriptionStands(), 50).unref();
    });
    if (opts.target.mode !== 'standalone') {
      // Replicas come and go; 'auto' follows them between connects too.
      this.replicaTimer = setInterval(() => void this.readReplicas(), 5_000);
      this.replicaTimer.unref();
    }
  }

  /**
   * ioredis gives a client up ('end') when connecting itself fails in a way it does not retry, as
   * when every Sentinel is unreachable or names a master that refuses us during a failover. A lease
   * client must never give up: start it again, as its own reconnects would.
   */
  private keepConnecting(client: LeaseClient): void {
    client.on('end', () => {
      if (this.closed) return;
      setTimeout(() => {
        if (!this.closed && client.status === 'end') client.connect().catch(() => undefined);
      }, 250).unref();
    });
  }

  /**
   * Only worth a look when lease commands can be sent: while the command connection is still
   * coming back, its own 'connected' follows and a look now would only fail and be counted.
   */
  private subscriptionStands(): void {
    if (this.isConnected()) this.emit({ kind: 'connected' });
  }

  subscribe(listener: (event: LockEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(event: LockEvent): void {
    if (this.closed) return;
    for (const l of this.listeners) l(event);
  }

  isConnected(): boolean {
    return this.redis.status === 'ready';
  }

  facts(): StoreFacts {
    return this.storeFacts;
  }

  /** The raw client, for leader work that writes to the same Redis (fenced writes). */
  get client(): LeaseClient {
    return this.redis;
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { session, instanceId, ttlMs } = this.opts;
    const k = this.keys;
    await this.factsRead;
    const reply = await this.call('acquire', () =>
      this.redis.grinderAcquire(
        k.record,
        k.counter,
        k.fence,
        k.init,
        k.veterans,
        session,
        instanceId,
        ttlMs,
        request.expectedVer ?? '',
        request.floor,
        request.barrierMs,
        newVersion(),
        k.events,
        request.fresh ? '1' : '',
      ),
    );
    const result = this.mapped('acquire', () => mapAcquireReply(reply, session));
    if (result.kind === 'acquired' || result.kind === 'barrier') {
      try {
        await this.replicated('acquire');
      } catch (err) {
        // Not on the replicas: a failover could lose it, so it is not ours to use. Hand it back.
        if (result.kind === 'acquired') this.abandon().catch(() => undefined);
        throw err;
      }
    }
    return result;
  }

  async renew(lease: Lease): Promise<RenewResult> {
    const reply = await this.call('renew', () =>
      this.redis.grinderRenew(this.keys.record, lease.token, this.opts.session, this.opts.ttlMs, newVersion(), this.keys.events),
    );
    const result = this.mapped('renew', () => mapRenewReply(reply, lease.token));
    if (result.kind === 'renewed') await this.replicated('renew');
    return result;
  }

  async release(lease: Lease): Promise<ReleaseResult> {
    const reply = await this.call('release', () => this.redis.grinderRelease(this.keys.record, lease.token, this.opts.session, newVersion(), this.keys.events));
    return this.mapped('release', () => mapReleaseReply(reply, 'release'));
  }

  async handOver(lease: Lease, successor: string): Promise<ReleaseResult> {
    const reply = await this.call('release', () =>
      this.redis.grinderHandoff(this.keys.record, lease.token, this.opts.session, newVersion(), successor, this.keys.events),
    );
    return this.mapped('release', () => mapReleaseReply(reply, 'handoff'));
  }

  async abandon(): Promise<ReleaseResult> {
    const reply = await this.call('release', () => this.redis.grinderReleaseSession(this.keys.record, this.opts.session, newVersion(), this.keys.events));
    return this.mapped('release', () => mapReleaseReply(reply, 'release-session'));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.replicaTimer) clearInterval(this.replicaTimer);
    this.subscriber.disconnect();
    this.redis.disconnect();
  }

  /**
   * Eviction policy and durability, where CONFIG is allowed (managed Redis often renames or
   * forbids it: then both stay unknown, which the elector treats as the unsafe case).
   */
  private async readFacts(): Promise<void> {
    const get = async (name: string): Promise<string | null> => {
      try {
        const r = (await this.redis.config('GET', name)) as unknown;
        return Array.isArray(r) && typeof r[1] === 'string' ? r[1] : null;
      } catch {
        return null;
      }
    };
    // First: a new master forgets the replicas seen on the old one before ROLE is read below.
    this.noteMaster(false);
    const [policy, appendonly, appendfsync] = await Promise.all([get('maxmemory-policy'), get('appendonly'), get('appendfsync'), this.readReplicas()]);
    // A Sentinel or Cluster failover promotes a replica that may lack the last writes.
    const standalone = this.opts.target.mode === 'standalone';
    const durable = appendonly === null || appendfsync === null ? null : standalone && appendonly === 'yes' && appendfsync === 'always';
    this.storeFacts = { ...this.storeFacts, maxmemoryPolicy: policy, durable };
    this.opts.onFacts?.(this.storeFacts);
  }

  /**
   * Notes which server serves the lock key now. Sentinel moves the whole connection (a 'ready'
   * after a break), but a Cluster client follows a slot failover (MOVED) on connections that never
   * break, so on Cluster this runs after every lease call too. A new master may hold an older
   * record: like a break in the connection, it restarts every standby's wait (announced as
   * 'disconnected') and forgets the replicas seen on the old master. After a connect, readFacts
   * reads the new master's replicas and reports; from a lease call, this does both.
   */
  private noteMaster(announce: boolean): void {
    const master = addressOf(nodeFor(this.redis, this.keys.record));
    if (master === null || master === this.lastMaster) return;
    const changed = this.lastMaster !== null;
    this.lastMaster = master;
    this.storeFacts = { ...this.storeFacts, master, masterChanges: this.storeFacts.masterChanges + (changed ? 1 : 0) };
    if (!changed) return;
    this.replicasSeen = 0;
    if (announce) {
      void this.readReplicas();
      this.opts.onFacts?.(this.storeFacts);
      this.emit({ kind: 'disconnected' });
    }
  }

  /** How many replicas the master serving the lock key has right now (ROLE). */
  private async readReplicas(): Promise<void> {
    // Only 'auto' on Sentinel or Cluster depends on the count (requiredReplicas): no ROLE otherwise.
    if (this.opts.minReplicas !== 'auto' || this.opts.target.mode === 'standalone') return;
    const node = nodeFor(this.redis, this.keys.record);
    if (!node || node.status !== 'ready') return;
    try {
      const role = (await node.call('ROLE')) as unknown;
      if (Array.isArray(role) && role[0] === 'master' && Array.isArray(role[2])) this.replicasSeen = Math.max(this.replicasSeen, role[2].length);
    } catch {
      // ROLE may be renamed away; then 'auto' requires nobody and an explicit number still counts.
    }
  }

  /**
   * How many acknowledgements a lease write needs. 'auto' is one once this process saw the
   * current master with a replica, and never follows the replicas connected right now: a master
   * cut off from its replicas (with the leader on its side of a partition) sees none after
   * repl-timeout, and counting writes there would let the leader go on while the Sentinels promote
   * a replica and a standby takes over on it. A promoted master whose only replica died with the
   * old one starts at none, so a leader is elected on it (SAFETY note: what that leaves open, and
   * why GRINDER_REDIS_MIN_REPLICAS=1 closes it).
   */
  private requiredReplicas(): number {
    const { minReplicas, target } = this.opts;
    if (minReplicas !== 'auto') return minReplicas;
    return target.mode === 'standalone' ? 0 : Math.min(1, this.replicasSeen);
  }

  /**
   * WAIT until the required replicas have the lease write just made on this connection, bounded
   * inside the command timeout; too few acknowledgements make the write not count.
   */
  private async replicated(operation: LockOperation): Promise<void> {
    const required = this.requiredReplicas();
    if (required === 0) {
      this.storeFacts = { ...this.storeFacts, replicasAcked: null };
      return;
    }
    const node = nodeFor(this.redis, this.keys.record);
    const timeoutMs = Math.max(10, Math.floor(this.opts.commandTimeoutMs / 2));
    let acked: number;
    try {
      if (!node) throw new Error('no connection to the master of the lock key');
      acked = Number(await node.call('WAIT', String(required), String(timeoutMs)));
    } catch (err) {
      this.storeFacts = { ...this.storeFacts, replicasAcked: false };
      this.opts.onReplication?.(false);
      throw classifyRedisError(operation, err);
    }
    const ok = acked >= required;
    this.storeFacts = { ...this.storeFacts, replicasAcked: ok };
    this.opts.onReplication?.(ok);
    if (!ok) {
      throw new LockUnavailableError(
        operation,
        'replication',
        `the ${operation} reached ${acked} of the ${required} replica(s) required within ${timeoutMs} ms; it does not count, because a failover could promote a replica without it`,
      );
    }
  }

  private async call<T>(operation: LockOperation, run: () => Promise<T>): Promise<T> {
    if (this.redis.status !== 'ready') {
      throw new LockUnavailableError(operation, 'connection', `Redis is not connected (client status ${this.redis.status})`);
    }
    try {
      return await run();
    } catch (err) {
      throw classifyRedisError(operation, err);
    } finally {
      if (this.opts.target.mode === 'cluster') this.noteMaster(true);
    }
  }

  private mapped<T>(operation: LockOperation, map: () => T): T {
    try {
      return map();
    } catch (err) {
      throw classifyRedisError(operation, err);
    }
  }
}

export function classifyRedisError(operation: LockOperation, err: unknown): LockUnavailableError {
  if (err instanceof LockUnavailableError) return err;
  const message = errMessage(err);
  if (err instanceof ReplyError && isFailoverReply(err as Error)) {
    return new LockUnavailableError(
      operation,
      'failover',
      `Redis answered the ${operation} with ${message.split(' ')[0]}: that node is not the master (a failover?); finding the master again`,
      { cause: err },
    );
  }
  if (err instanceof UnexpectedReplyError || err instanceof ReplyError) {
    return new LockUnavailableError(operation, 'script_error', `Redis rejected the ${operation} script: ${message}`, { cause: err });
  }
  if (/timed out/i.test(message)) {
    return new LockUnavailableError(operation, 'timeout', `Redis did not answer the ${operation} in time: ${message}`, { cause: err });
  }
  return new LockUnavailableError(operation, 'connection', `no usable connection to Redis for the ${operation}: ${message}`, { cause: err });
}
