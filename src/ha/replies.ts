import { UnexpectedReplyError, type RawReply } from '../redis/commands';
import type { AcquireResult, BarrierReason, Holder, RecordState, ReleaseResult, RenewResult } from './lock';

/**
 * Every lease script's raw reply turned into a typed result, here and nowhere else. The codes are
 * the ones the script headers in src/redis/scripts list.
 */
export const ReplyCode = {
  acquired: 1,
  observed: 0,
  barrierWritten: -1,
  foreign: -2,
  wrongType: -3,
  tokensExhausted: -4,
  renewed: 1,
  released: 1,
  notOurs: 0,
  declared: 1,
  notBrandNew: 0,
  /** fenced-append-4.lua */
  appended: 1,
  staleToken: -1,
} as const;

const STATES: readonly string[] = ['held', 'free', 'barrier', 'handoff'] satisfies RecordState[];
const BARRIER_REASONS: readonly string[] = ['data_loss', 'record_missing', 'rollback'] satisfies BarrierReason[];

function safeInt(v: string | number | undefined): number | null {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function str(v: string | number | undefined): string {
  return v === undefined ? '' : String(v);
}

export function mapAcquireReply(reply: RawReply, session: string): AcquireResult {
  const code = reply[0];
  switch (code) {
    case ReplyCode.acquired: {
      const token = safeInt(reply[1]);
      if (token === null || token <= 0) break;
      return { kind: 'acquired', lease: { token, ver: str(reply[2]) } };
    }
    case ReplyCode.observed: {
      const [, state, ver, token, ttl, maxTtl, instanceId, newest, holderSession] = reply;
      const t = safeInt(token);
      const l = safeInt(ttl);
      const m = safeInt(maxTtl);
      const n = safeInt(newest);
      if (!STATES.includes(str(state)) || t === null || l === null || m === null || n === null) break;
      return {
        kind: 'observed',
        record: {
          state: str(state) as RecordState,
          ver: str(ver),
          token: t,
          ttlMs: l,
          maxTtlMs: m,
          instanceId: str(instanceId),
          ours: str(holderSession) === session,
        },
        newest: n,
      };
    }
    case ReplyCode.barrierWritten: {
      const [, ver, ms, reason, newest] = reply;
      const d = safeInt(ms);
      const n = safeInt(newest);
      if (d === null || n === null || !BARRIER_REASONS.includes(str(reason))) break;
      return { kind: 'barrier', ver: str(ver), ms: d, reason: str(reason) as BarrierReason, newest: n };
    }
    case ReplyCode.foreign: {
      const n = safeInt(reply[3]);
      if (n === null) break;
      const pttl = Number(reply[2]);
      return {
        kind: 'foreign',
        ver: str(reply[1]),
        detail: `the lock key holds a string that is not a GRINDER lease record (${pttl >= 0 ? `expires in ${pttl} ms` : 'no expiry'})`,
        newest: n,
      };
    }
    case ReplyCode.wrongType:
      return {
        kind: 'anomaly',
        reason: 'wrong_type',
        detail: `the lock key holds a Redis ${str(reply[1])}, not a string; GRINDER never overwrites it: delete the key or choose another GRINDER_HA_LOCK_KEY`,
      };
    case ReplyCode.tokensExhausted:
      return {
        kind: 'anomaly',
        reason: 'invalid_value',
        detail: `no fencing token above ${str(reply[1])} fits below 2^53; reset the token counter and fence keys`,
      };
  }
  throw new UnexpectedReplyError('acquire', reply);
}

export function mapRenewReply(reply: RawReply, token: number): RenewResult {
  const [code, a, , c, d] = reply;
  if (code === ReplyCode.renewed) return { kind: 'renewed', lease: { token, ver: str(a) } };
  if (code === ReplyCode.notOurs) {
    const found = str(a);
    const holderToken = safeInt(c);
    const holder: Holder | null = found === 'held' && holderToken !== null ? { instanceId: str(d), token: holderToken } : null;
    return { kind: 'lost', found, holder };
  }
  throw new UnexpectedReplyError('renew', reply);
}

export function mapReleaseReply(reply: RawReply, script: string): ReleaseResult {
  if (reply[0] === ReplyCode.released) return { kind: 'released', ver: str(reply[1]) };
  if (reply[0] === ReplyCode.notOurs) return { kind: 'not_held' };
  throw new UnexpectedReplyError(script, reply);
}
