import type { Cluster, Redis } from 'ioredis';
import { defineCommands, UnexpectedReplyError } from '../redis/commands';
import type { LeaseKeys } from '../redis/keys';

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

export class FencedStream implements FencedAppender {
  readonly streamKey: string;
  private readonly keys: LeaseKeys;
  private readonly maxLen: number;

  constructor(
    private readonly redis: Redis | Cluster,
    opts: FencedStreamOptions,
  ) {
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
    if (code === 1) return { accepted: true, id: String(value) };
    if (code === -1) return { accepted: false, newestToken: Number(value) };
    throw new UnexpectedReplyError('fenced-append', reply);
  }
}
