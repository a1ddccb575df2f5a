import type { Cluster, Redis } from 'ioredis';
import { ReplyCode } from '../ha/replies';
import { FenceUsageError } from '../library/errors';
import type { Fence, FenceAppendOptions } from '../library/types';
import { defineCommands, UnexpectedReplyError } from '../redis/commands';
import { keyInLockSlot, sharesLockSlot, type LeaseKeys } from '../redis/keys';

/**
 * Fenced writes: the reusable piece that turns the lease's fencing token into safety. Leader work
 * that writes to Redis appends through a FencedStream; a write whose token is older than the
 * newest leadership is rejected, and the writer must step down (LeaderContext.resign).
 */
export type FencedAppendResult = { accepted: true; id: string } | { accepted: false; newestToken: number };

/** What leader work is handed: fenced appends, and nothing else of the Redis client. */
export interface FencedAppender {
  readonly streamKey: string;
  append(token: number, fields: Record<string, string | number>): Promise<FencedAppendResult>;
}

export interface FencedStreamOptions {
  streamKey: string;
  /** The lock's keys: the fence, the token counter and the record every write is checked against. */
  keys: LeaseKeys;
  /** Approximate cap on the stream length. */
  maxLen: number;
}

/** The default cap of a fenced stream (GRINDER_LIVE_STREAM_MAXLEN's default). */
export const DEFAULT_FENCED_MAXLEN = 10_000;
const MAX_FENCED_MAXLEN = 100_000_000;

export class FencedStream implements FencedAppender {
  readonly streamKey: string;
  private readonly keys: LeaseKeys;
  private readonly maxLen: number;

  constructor(
    private readonly redis: Redis | Cluster,
    opts: FencedStreamOptions,
  ) {
    // Each write is one script over the stream and the lock's keys; a Cluster runs a script only
    // when all its keys share one slot, so anything else would fail on every single write.
    if (redis.isCluster && !sharesLockSlot(opts.keys.record, opts.streamKey)) {
      throw new FenceUsageError(
        `fenced stream ${JSON.stringify(opts.streamKey)} is not in the lock key's Redis Cluster slot: each fenced write checks the lock's keys in the same script, so put the lock key's hash tag in the stream key, e.g. ${keyInLockSlot(opts.keys.record, 'mystream')} (fence.key('mystream'))`,
      );
    }
    this.streamKey = opts.streamKey;
    this.keys = opts.keys;
    this.maxLen = opts.maxLen;
    defineCommands(redis);
  }

  async append(token: number, fields: Record<string, string | number>): Promise<FencedAppendResult> {
    const flat: string[] = [];
    for (const [k, v] of Object.entries(fields)) flat.push(k, String(v));
    const k = this.keys;
    const reply = await this.redis.grinderFencedAppend(this.streamKey, k.fence, k.counter, k.record, token, this.maxLen, ...flat);
    const [code, value] = reply;
    if (code === ReplyCode.appended) return { accepted: true, id: String(value) };
    if (code === ReplyCode.staleToken) return { accepted: false, newestToken: Number(value) };
    throw new UnexpectedReplyError('fenced-append', reply);
  }
}

/**
 * The fence handle one leadership's work gets: appends carry its token, and the Redis client stays
 * out of reach (a handle that exposed it would let work write around the fence).
 */
export function fenceFor(redis: Redis | Cluster, keys: LeaseKeys, token: number): Fence {
  return {
    token,
    key: (name) => keyInLockSlot(keys.record, name),
    append: async (streamKey, fields, options?: FenceAppendOptions) => {
      const maxLen = options?.maxLen ?? DEFAULT_FENCED_MAXLEN;
      if (typeof streamKey !== 'string' || streamKey === '' || /\s/.test(streamKey)) {
        throw new FenceUsageError(
          `fence.append: the stream key must be a non-empty string without white space, e.g. fence.key('events'); got ${JSON.stringify(streamKey)}`,
        );
      }
      if (!Number.isSafeInteger(maxLen) || maxLen < 1 || maxLen > MAX_FENCED_MAXLEN) {
        throw new FenceUsageError(`fence.append: maxLen must be a whole number from 1 to ${MAX_FENCED_MAXLEN}; got ${String(maxLen)}`);
      }
      if (typeof fields !== 'object' || fields === null)
        throw new FenceUsageError('fence.append: fields must be an object of field names to strings or numbers');
      for (const [name, value] of Object.entries(fields)) {
        if (typeof value !== 'string' && typeof value !== 'number') {
          throw new FenceUsageError(
            `fence.append: field ${JSON.stringify(name)} is ${value === null ? 'null' : typeof value}; a stream entry holds strings and numbers only`,
          );
        }
      }
      return new FencedStream(redis, { streamKey, keys, maxLen }).append(token, fields);
    },
  };
}

/** With HA disabled there is no lock, so no token anyone could be fenced against. */
export function noFence(): Fence {
  return {
    token: 0,
    key: (name) => name,
    append: () =>
      Promise.reject(
        new FenceUsageError('fenced writes need HA: with GRINDER_HA_ENABLED=false there is no lock and no token to fence against; enable HA (and a Redis)'),
      ),
  };
}
