import type {
  AcquireRequest,
  AcquireResult,
  AnnouncedEvent,
  Lease,
  LeaseLock,
  LockEvent,
  RecordState,
  ReleaseResult,
  RenewResult,
  StoreFacts,
} from '../../src/ha/lock';
import { LockUnavailableError } from '../../src/ha/lock';
import type { FakeTime } from './fake-clock';

/*
 * An in-memory lease store with the semantics of the Lua scripts (src/redis/scripts/*.lua), on
 * fake time. Several FakeLocks share one store the way replicas share one Redis. The conformance
 * suite (test/integration/lock-conformance.test.ts) runs the same cases against this and against
 * Redis, so the two cannot drift apart unnoticed.
 */

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** TOKEN_LIMIT in include/lease-record.lua: a stored token above it is garbage. */
const TOKEN_LIMIT = 1.5 * 2 ** 52;

interface Rec {
  state: RecordState;
  ver: string;
  token: number;
  ttl: number;
  maxttl: number;
  session: string;
  instance: string;
}

function safeInt(s: string | null): number | null {
  if (s === null || s.length > 16 || !/^\d+$/.test(s)) return null;
  const n = Number(s);
  return n > MAX_SAFE ? null : n;
}

function tokenInt(s: string | null): number | null {
  const n = safeInt(s);
  return n !== null && n > TOKEN_LIMIT ? null : n;
}

export function parseRecord(v: string | null): Rec | null {
  if (v === null) return null;
  const m = /^2\|([a-z]+)\|([0-9a-fA-F]+)\|(\d+)\|(\d+)\|(\d+)\|([0-9a-fA-F]*)\|(.*)$/s.exec(v);
  if (!m) return null;
  const state = m[1] as string;
  if (state !== 'held' && state !== 'free' && state !== 'barrier' && state !== 'handoff') return null;
  const token = tokenInt(m[3] ?? null);
  const ttl = safeInt(m[4] ?? null);
  const maxttl = safeInt(m[5] ?? null);
  if (token === null || ttl === null || maxttl === null) return null;
  return { state, ver: m[2] as string, token, ttl, maxttl, session: m[6] as string, instance: m[7] as string };
}

export function formatRecord(r: Rec): string {
  return `2|${r.state}|${r.ver}|${r.token}|${r.ttl}|${r.maxttl}|${r.session}|${r.instance}`;
}

/** A stand-in for redis.sha1hex: any stable function of the value serves the fake. */
function fakeSha(v: string): string {
  let h = 0;
  for (const ch of v) h = (Math.imul(h, 31) + (ch.codePointAt(0) ?? 0)) >>> 0;
  return h.toString(16).padStart(8, '0');
}

export class FakeLeaseStore {
  /** The string at the lock key, or null when the key does not exist. */
  raw: string | null = null;
  /** Set to something else to simulate a non-string Redis type at the lock key. */
  keyType: 'string' | 'hash' = 'string';
  counter: string | null = null;
  fence: string | null = null;
  /** `grinder init`'s declaration of a brand-new cluster (the init key exists). */
  declared = false;
  /** Registered members that have seen a fencing token (the veterans key); a heartbeat adds one. */
  veterans = new Set<string>();
  /** Redis' clock in µs is this plus the fake time; null leaves the clock out of tokens, so they stay small and readable. */
  clockMicrosBase: number | null = null;
  facts: StoreFacts = { maxmemoryPolicy: 'noeviction', durable: true, mode: 'standalone', master: '127.0.0.1:6379', masterChanges: 0, replicasAcked: null };
  private readonly locks: FakeLock[] = [];
  private vers = 0;

  constructor(readonly time: FakeTime) {}

  /** @internal */
  register(lock: FakeLock): void {
    this.locks.push(lock);
  }

  newVer(): string {
    this.vers += 1;
    return this.vers.toString(16).padStart(4, '0');
  }

  record(): Rec | null {
    return this.keyType === 'string' ? parseRecord(this.raw) : null;
  }

  /** Redis restarted without its data. */
  loseData(): void {
    this.raw = null;
    this.counter = null;
    this.fence = null;
    this.declared = false;
    this.keyType = 'string';
    for (const l of this.locks) l.emit({ kind: 'disconnected' });
  }

  announce(event: AnnouncedEvent, r: Rec): void {
    const announcement = { event, ver: r.ver, token: r.token, ttlMs: r.ttl, instanceId: r.instance };
    for (const l of this.locks) if (l.mode !== 'down' && !l.deaf) l.emit({ kind: 'announcement', announcement });
  }

  /** Redis' TIME in microseconds (0 when left out). */
  nowMicros(): number {
    return this.clockMicrosBase === null ? 0 : this.clockMicrosBase + Math.floor(this.time.now() * 1000);
  }

  /** A free record, as a clean release leaves it: what a store that has seen GRINDER before holds. */
  setFree(token: number, ttl = 1_000): void {
    this.raw = formatRecord({ state: 'free', ver: this.newVer(), token, ttl, maxttl: ttl, session: 'ee', instance: 'earlier' });
    this.counter = String(token);
  }

  /** Writes a held record the way another replica's acquire would. */
  setHeld(token: number, instance: string, ttl = 1_000): void {
    this.raw = formatRecord({ state: 'held', ver: this.newVer(), token, ttl, maxttl: ttl, session: 'ff', instance });
    this.counter = String(token);
  }
}

/**
 * ok: answers; down: fails at once (connection); hang: never answers; timeout: fails after 200 ms
 * without running; late: runs at once, but the reply is lost (fails after 200 ms), like a command
 * that reached Redis over a link slower than the client's timeout.
 */
export type FailureMode = 'ok' | 'down' | 'hang' | 'timeout' | 'late';

export class FakeLock implements LeaseLock {
  readonly lockKey = 'test:lock';
  mode: FailureMode = 'ok';
  /** True: announcements do not reach this replica (its subscriber is cut off). */
  deaf = false;
  ttlMs = 1_000;
  /** Reply delay in fake ms (the command is applied when the reply arrives, unless applyAtSend). */
  latencyMs = 0;
  /** Apply the command when it is sent and deliver the answer latencyMs later: a reply that can be older than an announcement. */
  applyAtSend = false;
  calls: string[] = [];
  private readonly listeners: ((e: LockEvent) => void)[] = [];

  constructor(
    readonly store: FakeLeaseStore,
    readonly instanceId: string,
    readonly session: string,
    private readonly schedule: (fn: () => void, ms: number) => void,
  ) {
    store.register(this);
  }

  subscribe(listener: (event: LockEvent) => void): void {
    this.listeners.push(listener);
  }

  emit(event: LockEvent): void {
    for (const l of this.listeners) l(event);
  }

  isConnected(): boolean {
    return this.mode !== 'down';
  }

  facts(): StoreFacts {
    return this.store.facts;
  }

  async close(): Promise<void> {}

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return this.run('acquire', (): AcquireResult => {
      const s = this.store;
      if (s.keyType !== 'string') return { kind: 'anomaly', reason: 'wrong_type', detail: `a Redis ${s.keyType}` };
      const counter = tokenInt(s.counter);
      const fence = tokenInt(s.fence);
      const rec = s.record();
      const known = Math.max(counter ?? 0, fence ?? 0, rec?.token ?? 0);
      const floor = tokenInt(String(request.floor)) ?? 0;
      const newest = Math.max(known, floor);
      const writeBarrier = (reason: 'data_loss' | 'record_missing' | 'rollback'): AcquireResult => {
        const ms = Math.max(request.barrierMs, this.ttlMs, rec?.maxttl ?? 0, rec?.ttl ?? 0);
        const b: Rec = { state: 'barrier', ver: s.newVer(), token: newest, ttl: ms, maxttl: ms, session: this.session, instance: this.instanceId };
        s.raw = formatRecord(b);
        s.counter = String(newest);
        s.declared = false;
        s.announce('barrier', b);
        return { kind: 'barrier', ver: b.ver, ms, reason, newest };
      };
      const othersHaveLed = [...s.veterans].some((id) => id !== this.instanceId);
      if (s.raw === null && s.counter === null && request.fresh === true && s.fence === null && s.declared && !othersHaveLed) return this.take(rec, newest);
      if (s.raw === null) return writeBarrier(s.counter === null ? 'data_loss' : 'record_missing');
      if (floor > known) return writeBarrier('rollback');
      const currentVer = rec ? rec.ver : fakeSha(s.raw);
      if (request.expectedVer === null || request.expectedVer !== currentVer) {
        if (rec) {
          return {
            kind: 'observed',
            record: {
              state: rec.state,
              ver: rec.ver,
              token: rec.token,
              ttlMs: rec.ttl,
              maxTtlMs: rec.maxttl,
              instanceId: rec.instance,
              ours: rec.session === this.session,
            },
            newest,
          };
        }
        return { kind: 'foreign', ver: currentVer, detail: 'not a record', newest };
      }
      return this.take(rec, newest);
    });
  }

  private take(rec: Rec | null, newest: number): AcquireResult {
    const s = this.store;
    let token = newest + 1;
    const now = s.nowMicros();
    if (now > token && now <= TOKEN_LIMIT) token = now;
    if (token > TOKEN_LIMIT) return { kind: 'anomaly', reason: 'invalid_value', detail: 'tokens exhausted' };
    const maxttl = rec && rec.state !== 'barrier' ? Math.max(this.ttlMs, rec.ttl) : this.ttlMs;
    const held: Rec = { state: 'held', ver: s.newVer(), token, ttl: this.ttlMs, maxttl, session: this.session, instance: this.instanceId };
    s.raw = formatRecord(held);
    s.counter = String(token);
    s.declared = false;
    s.announce('acquired', held);
    return { kind: 'acquired', lease: { token, ver: held.ver } };
  }

  renew(lease: Lease): Promise<RenewResult> {
    return this.run('renew', (): RenewResult => {
      const s = this.store;
      if (s.keyType !== 'string') return { kind: 'lost', found: s.keyType, holder: null };
      if (s.raw === null) return { kind: 'lost', found: 'missing', holder: null };
      const rec = s.record();
      if (!rec) return { kind: 'lost', found: 'foreign', holder: null };
      if (rec.state !== 'held' || rec.token !== lease.token || rec.session !== this.session) {
        return { kind: 'lost', found: rec.state, holder: rec.state === 'held' ? { instanceId: rec.instance, token: rec.token } : null };
      }
      const next: Rec = { ...rec, ver: s.newVer(), ttl: this.ttlMs, maxttl: Math.max(this.ttlMs, rec.maxttl) };
      s.raw = formatRecord(next);
      s.announce('renewed', next);
      return { kind: 'renewed', lease: { token: lease.token, ver: next.ver } };
    });
  }

  release(lease: Lease): Promise<ReleaseResult> {
    return this.run('release', () => this.free((rec) => rec.token === lease.token && rec.session === this.session));
  }

  handOver(lease: Lease, successor: string): Promise<ReleaseResult> {
    return this.run('release', (): ReleaseResult => {
      const s = this.store;
      const rec = s.record();
      const ours = rec !== null && rec.token === lease.token && rec.session === this.session;
      // An earlier try that timed out had run: the same handoff.
      if (ours && rec.state === 'handoff' && rec.instance === successor) return { kind: 'released', ver: rec.ver };
      if (!ours || rec.state !== 'held') return { kind: 'not_held' };
      const next: Rec = { ...rec, state: 'handoff', ver: s.newVer(), instance: successor };
      s.raw = formatRecord(next);
      s.announce('handoff', next);
      return { kind: 'released', ver: next.ver };
    });
  }

  abandon(): Promise<ReleaseResult> {
    return this.run('abandon', () => this.free((rec) => rec.session === this.session));
  }

  private free(ours: (rec: Rec) => boolean): ReleaseResult {
    const s = this.store;
    const rec = s.record();
    if (!rec || rec.state !== 'held' || !ours(rec)) return { kind: 'not_held' };
    const next: Rec = { ...rec, state: 'free', ver: s.newVer() };
    s.raw = formatRecord(next);
    s.announce('released', next);
    return { kind: 'released', ver: next.ver };
  }

  private run<T>(op: 'acquire' | 'renew' | 'release' | 'abandon', apply: () => T): Promise<T> {
    this.calls.push(op);
    const lockOp = op === 'abandon' ? 'release' : op;
    if (this.mode === 'down') return Promise.reject(new LockUnavailableError(lockOp, 'connection', 'fake: Redis is down'));
    if (this.mode === 'hang') return new Promise<T>(() => undefined);
    if (this.mode === 'timeout' || this.mode === 'late') {
      if (this.mode === 'late') apply();
      return new Promise<T>((_, reject) => this.schedule(() => reject(new LockUnavailableError(lockOp, 'timeout', 'fake: timed out')), 200));
    }
    if (this.latencyMs === 0) return Promise.resolve(apply());
    if (this.applyAtSend) {
      const result = apply();
      return new Promise<T>((resolve) => this.schedule(() => resolve(result), this.latencyMs));
    }
    return new Promise<T>((resolve) => this.schedule(() => resolve(apply()), this.latencyMs));
  }
}
