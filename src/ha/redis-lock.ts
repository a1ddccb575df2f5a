import { randomBytes } from 'node:crypto';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { defineCommands, UnexpectedReplyError } from '../redis/commands';
import { leaseKeys, type LeaseKeys } from '../redis/keys';
import {
  LockUnavailableError,
  parseAnnouncement,
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

export interface RedisLeaseLockOptions {
  redisUrl: string;
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
}

/**
 * Connection settings that keep every lease call bounded and honest:
 * - no offline queue and no retries per request: a call made while disconnected fails at once
 *   instead of running later, when its answer would no longer mean what the elector thinks;
 * - no re-sending of in-flight commands after a reconnect, for the same reason;
 * - a command timeout well inside the lease, so a renew never waits past the lease deadline;
 * - fast reconnects (at most 250 ms apart) so a returning Redis is noticed within a second.
 */
export function leaseConnectionOptions(commandTimeoutMs: number): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(commandTimeoutMs, 500),
    retryStrategy: (times: number) => Math.min(50 * times, 250),
    lazyConnect: false,
  };
}

/** A new random record version. */
export const newVersion = (): string => randomBytes(8).toString('hex');

export class RedisLeaseLock implements LeaseLock {
  readonly lockKey: string;
  readonly keys: LeaseKeys;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly listeners: ((event: LockEvent) => void)[] = [];
  private readonly opts: RedisLeaseLockOptions;
  private storeFacts: StoreFacts = { maxmemoryPolicy: null, durable: null };
  private closed = false;
  private factsRead: Promise<void> = Promise.resolve();

  constructor(opts: RedisLeaseLockOptions) {
    this.opts = opts;
    this.lockKey = opts.lockKey;
    this.keys = leaseKeys(opts.lockKey);
    this.redis = new Redis(opts.redisUrl, leaseConnectionOptions(opts.commandTimeoutMs));
    defineCommands(this.redis);
    this.redis.on('error', (err: Error) => opts.onConnectionError?.(err));
    this.redis.on('ready', () => {
      // The elector's first decision after a connect depends on the durability it reports.
      this.factsRead = this.readFacts().finally(() => this.emit({ kind: 'connected' }));
    });
    this.redis.on('close', () => this.emit({ kind: 'disconnected' }));

    // Announcements make takeovers prompt; they are never a source of truth, so this connection
    // may queue its SUBSCRIBE until Redis is there and resubscribe after every reconnect.
    this.subscriber = new Redis(opts.redisUrl, {
      connectTimeout: Math.max(opts.commandTimeoutMs, 500),
      retryStrategy: (times: number) => Math.min(50 * times, 250),
      maxRetriesPerRequest: null,
    });
    this.subscriber.on('error', () => {
      // The command connection reports the same outage; one report is enough.
    });
    this.subscriber.on('close', () => this.emit({ kind: 'disconnected' }));
    this.subscriber.on('message', (_channel: string, message: string) => {
      const announcement = parseAnnouncement(message);
      if (announcement) this.emit({ kind: 'announcement', announcement });
    });
    this.subscriber.subscribe(this.keys.events).catch(() => {
      // Only fails when closed during start-up; autoResubscribe covers reconnects.
    });
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
  get client(): Redis {
    return this.redis;
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { session, instanceId, ttlMs } = this.opts;
    const k = this.keys;
    await this.factsRead;
    const reply = await this.call('acquire', () =>
      this.redis.grinderAcquire(k.record, k.counter, k.fence, session, instanceId, ttlMs, request.expectedVer ?? '', request.floor, request.barrierMs, newVersion(), k.events),
    );
    return this.mapped('acquire', () => mapAcquireReply(reply, session));
  }

  async renew(lease: Lease): Promise<RenewResult> {
    const reply = await this.call('renew', () =>
      this.redis.grinderRenew(this.keys.record, lease.token, this.opts.session, this.opts.ttlMs, newVersion(), this.keys.events),
    );
    return this.mapped('renew', () => mapRenewReply(reply, lease.token));
  }

  async release(lease: Lease): Promise<ReleaseResult> {
    const reply = await this.call('release', () =>
      this.redis.grinderRelease(this.keys.record, lease.token, this.opts.session, newVersion(), this.keys.events),
    );
    return this.mapped('release', () => mapReleaseReply(reply, 'release'));
  }

  async abandon(): Promise<ReleaseResult> {
    const reply = await this.call('release', () =>
      this.redis.grinderReleaseSession(this.keys.record, this.opts.session, newVersion(), this.keys.events),
    );
    return this.mapped('release', () => mapReleaseReply(reply, 'release-session'));
  }

  async close(): Promise<void> {
    this.closed = true;
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
    const [policy, appendonly, appendfsync] = await Promise.all([get('maxmemory-policy'), get('appendonly'), get('appendfsync')]);
    const durable = appendonly === null || appendfsync === null ? null : appendonly === 'yes' && appendfsync === 'always';
    this.storeFacts = { maxmemoryPolicy: policy, durable };
    this.opts.onFacts?.(this.storeFacts);
  }

  private async call<T>(operation: LockOperation, run: () => Promise<T>): Promise<T> {
    if (this.redis.status !== 'ready') {
      throw new LockUnavailableError(operation, 'connection', `Redis is not connected (client status ${this.redis.status})`);
    }
    try {
      return await run();
    } catch (err) {
      throw classifyRedisError(operation, err);
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
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof UnexpectedReplyError || err instanceof ReplyError) {
    return new LockUnavailableError(operation, 'script_error', `Redis rejected the ${operation} script: ${message}`, { cause: err });
  }
  if (/timed out/i.test(message)) {
    return new LockUnavailableError(operation, 'timeout', `Redis did not answer the ${operation} in time: ${message}`, { cause: err });
  }
  return new LockUnavailableError(operation, 'connection', `no usable connection to Redis for the ${operation}: ${message}`, { cause: err });
}
