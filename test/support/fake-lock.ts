import type { AcquireResult, Lease, LeaseLock, LockEvent, ReleaseResult, RenewResult } from '../../src/ha/lock';
import { LockUnavailableError, parseLeaseValue } from '../../src/ha/lock';
import type { FakeTime } from './fake-clock';

/**
 * An in-memory lease store with the semantics of the Lua scripts (src/ha/scripts/*.lua), on fake
 * time. Several FakeLocks share one store the way replicas share one Redis.
 */
export class FakeLeaseStore {
  value: string | null = null;
  expiresAt = Infinity;
  /** Set to something else to simulate a non-string Redis type at the lock key. */
  keyType: 'string' | 'hash' = 'string';
  counter: number | null = 100;
  private readonly locks: FakeLock[] = [];

  constructor(readonly time: FakeTime) {}

  /** @internal */
  register(lock: FakeLock): void {
    this.locks.push(lock);
  }

  current(): string | null {
    if (this.value !== null && this.time.now() >= this.expiresAt) this.value = null;
    return this.value;
  }

  set(value: string | null, ttlMs = Infinity): void {
    this.value = value;
    this.expiresAt = this.time.now() + ttlMs;
  }

  pttl(): number {
    return this.expiresAt === Infinity ? -1 : Math.max(0, this.expiresAt - this.time.now());
  }

  /** Redis restarted without its data. */
  loseData(): void {
    this.value = null;
    this.counter = null;
    this.keyType = 'string';
  }

  announceRelease(): void {
    for (const l of this.locks) l.emit('released');
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
  ttlMs = 1_000;
  /** Reply delay in fake ms (the command is applied when the reply arrives). */
  latencyMs = 0;
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

  async close(): Promise<void> {}

  acquire(): Promise<AcquireResult> {
    return this.run('acquire', () => {
      const s = this.store;
      if (s.keyType !== 'string') return { kind: 'anomaly', reason: 'wrong_type', detail: 'hash', remainingMs: s.pttl() };
      const cur = s.current();
      if (cur !== null) {
        if (cur.startsWith('barrier|')) return { kind: 'barrier', remainingMs: s.pttl() };
        const p = parseLeaseValue(cur);
        if (!p) return { kind: 'anomaly', reason: 'invalid_value', detail: cur, remainingMs: s.pttl() };
        if (p.session !== this.session) return { kind: 'held', holder: { instanceId: p.instanceId, token: p.token }, remainingMs: s.pttl() };
      }
      if (s.counter === null) {
        s.counter = 1_000_000;
        s.set('barrier|1000000', this.ttlMs);
        return { kind: 'barrier', remainingMs: this.ttlMs };
      }
      s.counter += 1;
      const value = `${s.counter}|${this.session}|${this.instanceId}`;
      s.set(value, this.ttlMs);
      return { kind: 'acquired', lease: { token: s.counter, value } };
    });
  }

  renew(lease: Lease): Promise<RenewResult> {
    return this.run('renew', () => {
      const s = this.store;
      if (s.keyType !== 'string') return { kind: 'anomaly', reason: 'wrong_type', detail: 'hash', remainingMs: s.pttl() };
      const cur = s.current();
      if (cur === lease.value) {
        s.set(cur, this.ttlMs);
        return { kind: 'renewed' };
      }
      if (cur === null || cur.startsWith('barrier|')) return { kind: 'lost', holder: null, remainingMs: s.pttl() };
      const p = parseLeaseValue(cur);
      if (!p) return { kind: 'anomaly', reason: 'invalid_value', detail: cur, remainingMs: s.pttl() };
      return { kind: 'lost', holder: { instanceId: p.instanceId, token: p.token }, remainingMs: s.pttl() };
    });
  }

  release(lease: Lease): Promise<ReleaseResult> {
    return this.run('release', () => {
      if (this.store.current() !== lease.value) return { kind: 'not_held' };
      this.store.set(null);
      this.store.announceRelease();
      return { kind: 'released' };
    });
  }

  abandon(): Promise<ReleaseResult> {
    return this.run('abandon', () => {
      const cur = this.store.current();
      if (cur === null || parseLeaseValue(cur)?.session !== this.session) return { kind: 'not_held' };
      this.store.set(null);
      this.store.announceRelease();
      return { kind: 'released' };
    });
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
    return new Promise<T>((resolve) => this.schedule(() => resolve(apply()), this.latencyMs));
  }
}
