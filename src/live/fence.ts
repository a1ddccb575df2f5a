import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Result } from 'ioredis';

/**
 * Fenced writes: the reusable piece that turns the lease's fencing token into safety. Any leader
 * work that writes to Redis can append through a FencedStream; a write whose token is lower than
 * one the stream already accepted is rejected, and the writer must step down (ctx.resign).
 */

declare module 'ioredis' {
  interface RedisCommander<Context> {
    grinderFencedAppend(streamKey: string, fenceKey: string, token: number, maxLen: number, ...fields: string[]): Result<(string | number)[], Context>;
  }
}

export type FencedAppendResult = { accepted: true; id: string } | { accepted: false; highestToken: number };

export const fenceKeyFor = (streamKey: string): string => `${streamKey}:fence`;

const registered = new WeakSet<Redis>();

export class FencedStream {
  constructor(
    private readonly redis: Redis,
    readonly streamKey: string,
    private readonly maxLen: number,
  ) {
    if (!registered.has(redis)) {
      registered.add(redis);
      redis.defineCommand('grinderFencedAppend', {
        numberOfKeys: 2,
        lua: readFileSync(join(__dirname, 'scripts', 'fenced-append-2.lua'), 'utf8'),
      });
    }
  }

  async append(token: number, fields: Record<string, string | number>): Promise<FencedAppendResult> {
    const flat: string[] = [];
    for (const [k, v] of Object.entries(fields)) flat.push(k, String(v));
    const reply = await this.redis.grinderFencedAppend(this.streamKey, fenceKeyFor(this.streamKey), token, this.maxLen, ...flat);
    const [code, value] = reply;
    if (code === 1) return { accepted: true, id: String(value) };
    if (code === -1) return { accepted: false, highestToken: Number(value) };
    throw new Error(`the fenced-append script answered ${JSON.stringify(reply)}, which its header does not allow`);
  }
}
