import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { LockOperation } from '../telemetry/names';
import {
  LockUnavailableError,
  type AcquireResult,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type ReleaseResult,
  type RenewResult,
} from './lock';
import { defineLeaseCommands, mapAcquireReply, mapReleaseReply, mapRenewReply, UnexpectedReplyError } from './scripts';

export interface RedisLeaseLockOptions {
  redisUrl: string;
  lockKey: string;
  instanceId: string;
  /** Random hex naming this process incarnation; part of the lease value. */
  session: string;
  ttlMs: number;
  commandTimeoutMs: number;
  /** Called with connection errors, which ioredis reports as events rather than rejections. */
  onConnectionError?: (err: Error) => void;
}

/** The key holding the last fencing token handed out. */
export const counterKeyFor = (lockKey: string): string => `${lockKey}:token`;
/** The channel a releasing holder announces on, so standbys retry at once. */
export const releaseChannelFor = (lockKey: string): string => `${lockKey}:released`;

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

export class RedisLeaseLock implements LeaseLock {
  readonly lockKey: string;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly listeners: ((event: LockEvent) => void)[] = [];
  private readonly opts: RedisLeaseLockOptions;

  constructor(opts: RedisLeaseLockOptions) {
    this.opts = opts;
    this.lockKey = opts.lockKey;
    this.redis = new Redis(opts.redisUrl, leaseConnectionOptions(opts.commandTimeoutMs));
    defineLeaseCommands(this.redis);
    this.redis.on('error', (err: Error) => opts.onConnectionError?.(err));
    this.redis.on('ready', () => this.emit('connected'));

    // Announcements are a hint to retry early, never a source of truth, so this connection may
    // queue its SUBSCRIBE until Redis is there and resubscribe after every reconnect.
    this.subscriber = new Redis(opts.redisUrl, {
      connectTimeout: Math.max(opts.commandTimeoutMs, 500),
      retryStrategy: (times: number) => Math.min(50 * times, 250),
      maxRetriesPerRequest: null,
    });
    this.subscriber.on('error', () => {
      // The command connection reports the same outage; one report is enough.
    });
    this.subscriber.on('message', () => this.emit('released'));
    this.subscriber.subscribe(releaseChannelFor(opts.lockKey)).catch(() => {
      // Only fails when closed during start-up; autoResubscribe covers reconnects.
    });
  }

  subscribe(listener: (event: LockEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(event: LockEvent): void {
    for (const l of this.listeners) l(event);
  }

  isConnected(): boolean {
    return this.redis.status === 'ready';
  }

  /** The raw client, for leader work that writes to the same Redis (fenced writes). */
  get client(): Redis {
    return this.redis;
  }

  async acquire(): Promise<AcquireResult> {
    const { lockKey, session, instanceId, ttlMs } = this.opts;
    const reply = await this.call('acquire', () =>
      this.redis.grinderAcquire(lockKey, counterKeyFor(lockKey), session, instanceId, ttlMs),
    );
    return this.mapped('acquire', () => mapAcquireReply(reply, session, instanceId));
  }

  async renew(lease: Lease): Promise<RenewResult> {
    const reply = await this.call('renew', () => this.redis.grinderRenew(this.lockKey, lease.value, this.opts.ttlMs));
    return this.mapped('renew', () => mapRenewReply(reply));
  }

  async release(lease: Lease): Promise<ReleaseResult> {
    const reply = await this.call('release', () =>
      this.redis.grinderRelease(this.lockKey, lease.value, releaseChannelFor(this.lockKey)),
    );
    return this.mapped('release', () => mapReleaseReply(reply));
  }

  async abandon(): Promise<ReleaseResult> {
    const reply = await this.call('release', () =>
      this.redis.grinderReleaseSession(this.lockKey, this.opts.session, releaseChannelFor(this.lockKey)),
    );
    return this.mapped('release', () => mapReleaseReply(reply));
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
    this.redis.disconnect();
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
    return new LockUnavailableError(operation, 'script_error', `Redis rejected the ${operation} script: ${message}`);
  }
  if (/timed out/i.test(message)) {
    return new LockUnavailableError(operation, 'timeout', `Redis did not answer the ${operation} in time: ${message}`);
  }
  return new LockUnavailableError(operation, 'connection', `no usable connection to Redis for the ${operation}: ${message}`);
}
