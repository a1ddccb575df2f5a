import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Result } from 'ioredis';
import { UnexpectedReplyError } from '../ha/scripts';

/**
 * Fenced writes: the reusable piece that turns the lease's fencing token into safety. Any leader
 * work that writes to Redis can append through a FencedStream; a write whose token is older than
 * the newest leadership is rejected, and the writer must step down (LeaderContext.resign).
 */

declare module 'ioredis' {
  interface RedisCommander<Context> {
    grinderFencedAppend(
      streamKey: string,
      fenceKey: string,
      issuedTokenKey: string,
      token: number,
      maxLen: number,
      ...fields: string[]
    ): Result<(string | number)[], Context>;
  }
}

export type FencedAppendResult = { accepted: true; id: string } | { accepted: false; newestToken: number };

export const fenceKeyFor = (streamKey: string): string => `${streamKey}:fence`;

const registered = new WeakSet<Redis>();

export interface FencedStreamOptions {
  streamKey: string;
  /** The lease's token counter (counterKeyFor(lockKey)): writes from before the newest leadership are rejected. */
  issuedTokenKey: string;
  /** Approximate cap on the stream length. */
  maxLen: number;
}

export class FencedStream {
  readonly streamKey: string;
  private readonly issuedTokenKey: string;
  private readonly maxLen: number;

  constructor(
    private readonly redis: Redis,
    opts: FencedStreamOptions,
  ) {
    this.streamKey = opts.streamKey;
    this.issuedTokenKey = opts.issuedTokenKey;
    this.maxLen = opts.maxLen;
    if (!registered.has(redis)) {
      registered.add(redis);
      redis.defineCommand('grinderFencedAppend', {
        numberOfKeys: 3,
        lua: readFileSync(join(__dirname, 'scripts', 'fenced-append-3.lua'), 'utf8'),
      });
    }
  }

  async append(token: number, fields: Record<string, string | number>): Promise<FencedAppendResult> {
    const flat: string[] = [];
    for (const [k, v] of Object.entries(fields)) flat.push(k, String(v));
    const reply = await this.redis.grinderFencedAppend(this.streamKey, fenceKeyFor(this.streamKey), this.issuedTokenKey, token, this.maxLen, ...flat);
    const [code, value] = reply;
    if (code === 1) return { accepted: true, id: String(value) };
    if (code === -1) return { accepted: false, newestToken: Number(value) };
    throw new UnexpectedReplyError('fenced-append', reply);
  }
}
