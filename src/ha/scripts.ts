import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Result } from 'ioredis';
import {
  parseLeaseValue,
  type AcquireResult,
  type Holder,
  type ReleaseResult,
  type RenewResult,
} from './lock';

/**
 * The Lua scripts behind the lease, registered once per connection with ioredis `defineCommand`
 * (EVALSHA with a transparent EVAL fallback) and typed through ioredis' module augmentation.
 * Every script's raw reply is turned into a typed result here and nowhere else.
 */

type RawReply = (string | number)[];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    grinderAcquire(
      lockKey: string,
      counterKey: string,
      session: string,
      instanceId: string,
      ttlMs: number,
    ): Result<RawReply, Context>;
    grinderRenew(lockKey: string, leaseValue: string, ttlMs: number): Result<RawReply, Context>;
    grinderRelease(lockKey: string, leaseValue: string, channel: string): Result<number, Context>;
    grinderReleaseSession(lockKey: string, session: string, channel: string): Result<number, Context>;
  }
}

const SCRIPTS = [
  { command: 'grinderAcquire', file: 'acquire-2.lua', numberOfKeys: 2 },
  { command: 'grinderRenew', file: 'renew-1.lua', numberOfKeys: 1 },
  { command: 'grinderRelease', file: 'release-1.lua', numberOfKeys: 1 },
  { command: 'grinderReleaseSession', file: 'release-session-1.lua', numberOfKeys: 1 },
] as const;

/** Reads a script shipped next to this module (copied into dist/ by the build). */
export function scriptSource(file: string): string {
  return readFileSync(join(__dirname, 'scripts', file), 'utf8');
}

export function defineLeaseCommands(redis: Redis): void {
  for (const s of SCRIPTS) {
    redis.defineCommand(s.command, { numberOfKeys: s.numberOfKeys, lua: scriptSource(s.file) });
  }
}

/** Thrown when a script answers with a shape its header does not allow: a bug, not an outage. */
export class UnexpectedReplyError extends Error {
  constructor(script: string, reply: unknown) {
    super(`the ${script} script answered ${JSON.stringify(reply)}, which its header does not allow; is an older or newer GRINDER version sharing this lock key?`);
    this.name = 'UnexpectedReplyError';
  }
}

function num(v: string | number | undefined): number {
  return typeof v === 'number' ? v : Number(v);
}

function holderOf(value: string): Holder | null {
  const parsed = parseLeaseValue(value);
  return parsed ? { instanceId: parsed.instanceId, token: parsed.token } : null;
}

export function mapAcquireReply(reply: RawReply, session: string, instanceId: string): AcquireResult {
  const [code, a, b] = reply;
  switch (code) {
    case 1: {
      const token = num(a);
      if (!Number.isSafeInteger(token) || token <= 0) break;
      return { kind: 'acquired', lease: { token, value: `${token}|${session}|${instanceId}` } };
    }
    case -1: {
      const holder = holderOf(String(a));
      if (holder) return { kind: 'held', holder, remainingMs: num(b) };
      break;
    }
    case -2:
      return { kind: 'anomaly', reason: 'invalid_value', detail: `the lock key holds ${JSON.stringify(String(a).slice(0, 80))}, which is not a GRINDER lease`, remainingMs: num(b) };
    case -3:
      return { kind: 'anomaly', reason: 'wrong_type', detail: `the lock key holds a Redis ${String(a)}, not a string`, remainingMs: num(b) };
    case -4:
      return { kind: 'barrier', remainingMs: num(a) };
  }
  throw new UnexpectedReplyError('acquire', reply);
}

export function mapRenewReply(reply: RawReply): RenewResult {
  const [code, a, b] = reply;
  switch (code) {
    case 1:
      return { kind: 'renewed' };
    case -1:
      return { kind: 'lost', holder: holderOf(String(a)), remainingMs: num(b) };
    case -2:
      return { kind: 'anomaly', reason: 'invalid_value', detail: `the lock key holds ${JSON.stringify(String(a).slice(0, 80))}, which is not a GRINDER lease`, remainingMs: num(b) };
    case -3:
      return { kind: 'anomaly', reason: 'wrong_type', detail: `the lock key holds a Redis ${String(a)}, not a string`, remainingMs: num(b) };
    case -4:
      return { kind: 'lost', holder: null, remainingMs: num(a) };
    case -5:
      return { kind: 'lost', holder: null, remainingMs: 0 };
  }
  throw new UnexpectedReplyError('renew', reply);
}

export function mapReleaseReply(reply: number): ReleaseResult {
  if (reply === 1) return { kind: 'released' };
  if (reply === 0) return { kind: 'not_held' };
  throw new UnexpectedReplyError('release', reply);
}

