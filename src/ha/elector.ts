import type { Logger } from 'pino';
import type { Clock, TimerHandle } from './clock';
import { LockUnavailableError, type Holder, type Lease, type LeaseLock } from './lock';
import type { HaSnapshot, HaStatusSource, LeaderContext, LeaderWork, Role } from './role';
import type { LeaseTiming } from './timing';

/*
 * SAFETY — what the lease does and does not guarantee.
 *
 * Model. One Redis key holds the lease with a PX expiry. Acquire, renew and release are Lua
 * scripts, so each compare-and-set runs atomically on the Redis server. Redis, not any replica,
 * decides who holds the key; replicas only decide when they *stop believing* they hold it.
 *
 * The holder's deadline. A replica notes its monotonic clock at the moment it SENDS an acquire or
 * renew (t0). Redis applies the expiry after receiving the command, so the key cannot expire
 * before t0 + TTL on the holder's clock — provided the two clocks advance at about the same rate.
 * The holder therefore calls itself ACTIVE only until t0 + TTL − safetyMargin. The margin covers
 * clock-rate drift (1% of the TTL; NTP slews far less) and a step-down timer firing late (25 ms).
 * It does not need to cover network delay: that only moves Redis' expiry later.
 *
 * Judged when asked. The deadline is checked every time anyone asks for the role (/readyz,
 * /metrics, LeaderContext.isLeader(), the start of every loop tick), not only when a timer fires.
 * After a long pause (GC, SIGSTOP) the first question after waking already sees the deadline has
 * passed, steps down (firing the leader work's AbortSignal) and answers STANDBY.
 *
 * What it does NOT guarantee. A leader's side effects can still land after its lease ended: a
 * request it sent before a pause can arrive later, and code that does not check the signal keeps
 * running. The lease only bounds when a replica *believes* it leads. Work that must never
 * overlap has to be fenced: every leadership gets a token greater than all earlier ones, and the
 * store that receives the work must reject a token lower than one it has seen (see live/fence).
 *
 * Assumptions. (1) The holder's and Redis' clocks run at rates within 1% of each other (a
 * wall-clock jump does not matter: Redis expiry and our deadline are both relative). (2) Redis
 * does not lose an acknowledged write while it keeps running; a Redis that restarts WITHOUT its
 * data is detected by the missing token counter, and then nobody may lead for one full TTL (the
 * lock-delay barrier), which outlasts any deadline computed before the loss. A Redis failover to
 * a replica that missed recent writes is NOT detected; use one Redis with appendonly persistence.
 * (3) Every Redis call is bounded by a timeout shorter than the lease, and nothing is queued while
 * disconnected, so no stale command runs after the elector has moved on.
 */

export interface ElectorOptions {
  instanceId: string;
  timing: LeaseTiming;
  lock: LeaseLock;
  clock: Clock;
  log: Logger;
  /** Told about every role change, after it happened. */
  onTransition?: (from: Role, to: Role) => void;
}

interface HeldLease {
  lease: Lease;
  /** Local monotonic time until which we may call ourselves ACTIVE. */
  validUntil: number;
  controller: AbortController;
}

interface ObservedHolder {
  holder: Holder;
  remainingMs: number;
  observedAt: number;
}

export class LeaderElector implements HaStatusSource {
  private readonly opts: ElectorOptions;
  private role: Role = 'unknown';
  private held: HeldLease | null = null;
  private observed: ObservedHolder | null = null;
  private lastToken: number | null = null;
  private lastRenewOkAt: number | null = null;
  private lastTickAt: number | null = null;
  private tickTimer: TimerHandle | null = null;
  private deadlineTimer: TimerHandle | null = null;
  private ticking: Promise<void> | null = null;
  private rerunAfterTick = false;
  private started = false;
  private stopped = false;
  private work: LeaderWork | null = null;
  private workRuns = new Set<Promise<void>>();
  /** What the last acquire saw, so repeated identical findings are logged once, not every tick. */
  private lastAcquireKind: string | null = null;

  constructor(opts: ElectorOptions) {
    this.opts = opts;
    opts.lock.subscribe((event) => {
      // A fresh connection or an announced release both mean the lease may be free right now.
      if (!this.held) this.kick(event);
    });
  }

  /** Registers the work to run while ACTIVE. Call before start(). */
  onLeading(work: LeaderWork): void {
    this.work = work;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    // A connection still opening is not a failure: give it one command timeout, and the
    // 'connected' event starts the first attempt sooner when it opens in time.
    this.schedule(this.opts.lock.isConnected() ? 0 : this.opts.timing.commandTimeoutMs);
  }

  currentRole(): Role {
    this.enforceDeadline();
    return this.role;
  }

  snapshot(): HaSnapshot {
    const role = this.currentRole();
    const now = this.opts.clock.now();
    const { timing, lock } = this.opts;
    let holder: string | null = null;
    let leaseRemainingMs: number | null = null;
    let fencingToken = this.lastToken;
    if (this.held) {
      holder = this.opts.instanceId;
      fencingToken = this.held.lease.token;
      leaseRemainingMs = Math.max(0, Math.round(this.held.validUntil - now));
    } else if (this.observed) {
      holder = this.observed.holder.instanceId;
      fencingToken = this.observed.holder.token;
      const left = this.observed.remainingMs - (now - this.observed.observedAt);
      leaseRemainingMs = Math.max(0, Math.round(left));
      if (left <= 0) holder = null;
    }
    // Ticks come at most one renew interval plus one Redis timeout apart (config validation keeps
    // that under the TTL), so a loop that has not ticked for a whole TTL is stuck.
    const loopHealthy = this.lastTickAt === null || now - this.lastTickAt <= timing.ttlMs;
    return {
      role,
      haEnabled: true,
      holder,
      fencingToken,
      leaseRemainingMs,
      lastRenewAgeMs: this.lastRenewOkAt === null ? null : Math.round(now - this.lastRenewOkAt),
      redisConnected: lock.isConnected(),
      loopHealthy,
    };
  }

  /**
   * Stops electing: aborts the leader work, waits for it (bounded), releases the lease if held so
   * the next replica can take over at once, and closes the lock.
   */
  async stop(workGraceMs = 2_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer('tickTimer');
    this.clearTimer('deadlineTimer');
    await this.ticking;
    const held = this.held;
    this.held = null;
    if (held) {
      held.controller.abort(new Error('replica is shutting down'));
      this.setRole('standby', 'shutting down', held);
    }
    await this.settleWork(workGraceMs);
    if (held) {
      try {
        const r = await this.opts.lock.release(held.lease);
        this.opts.log.info({ token: held.lease.token, result: r.kind }, 'lease released on shutdown');
      } catch (err) {
        this.opts.log.warn({ err: errMessage(err) }, 'could not release the lease on shutdown; the next replica takes over when it expires');
      }
    }
    await this.opts.lock.close();
  }

  /** Runs a tick now instead of at its scheduled time (coalesced with one in flight). */
  private kick(why: string): void {
    if (this.stopped || !this.started) return;
    if (this.ticking) {
      this.rerunAfterTick = true;
      return;
    }
    this.opts.log.debug({ why }, 'retrying the lease at once');
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    this.clearTimer('tickTimer');
    this.tickTimer = this.opts.clock.setTimeout(() => {
      this.tickTimer = null;
      this.ticking = this.tick().finally(() => {
        this.ticking = null;
      });
    }, delayMs);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.lastTickAt = this.opts.clock.now();
    this.enforceDeadline();
    let next: number;
    try {
      next = this.held ? await this.renewOnce(this.held) : await this.acquireOnce();
    } catch (err) {
      // A bug, not an outage: keep the loop alive and say so loudly.
      this.opts.log.error({ err: errMessage(err) }, 'election tick failed unexpectedly');
      next = this.opts.timing.renewIntervalMs;
    }
    if (this.stopped) return;
    if (this.rerunAfterTick && !this.held) next = 0;
    this.rerunAfterTick = false;
    this.schedule(next);
  }

  /** Returns the delay until the next tick. */
  private async acquireOnce(): Promise<number> {
    const { clock, lock, timing, log } = this.opts;
    const sentAt = clock.now();
    let result;
    try {
      result = await lock.acquire();
    } catch (err) {
      this.onUnavailable(err, 'acquire');
      if (err instanceof LockUnavailableError && err.reason === 'timeout') {
        // The acquire may have run in Redis after we stopped waiting, granting a lease nobody
        // uses: on a slow link that would keep every replica out. Hand back whatever we got.
        lock.abandon().catch(() => undefined);
      }
      this.setRole('standby', 'lock store unavailable');
      return timing.renewIntervalMs;
    }
    if (this.stopped) {
      // Shutting down while the acquire was in flight: do not lead, hand it back.
      if (result.kind === 'acquired') await lock.release(result.lease).catch(() => undefined);
      return 0;
    }
    const firstTimeSeen = this.lastAcquireKind !== result.kind;
    this.lastAcquireKind = result.kind;
    switch (result.kind) {
      case 'acquired': {
        const validUntil = sentAt + timing.leaseValidityMs;
        if (clock.now() >= validUntil) {
          // The answer came back after the lease it granted would already be over.
          this.setRole('standby', 'acquire answered too late to use');
          return 0;
        }
        this.observed = null;
        this.lastToken = result.lease.token;
        this.lastRenewOkAt = sentAt;
        this.held = { lease: result.lease, validUntil, controller: new AbortController() };
        this.armDeadline();
        this.setRole('active', `acquired the lease with fencing token ${result.lease.token}`);
        this.startWork(this.held);
        return Math.max(0, sentAt + timing.renewIntervalMs - clock.now());
      }
      case 'held':
        this.observe(result.holder, result.remainingMs, sentAt);
        this.setRole('standby', `lease held by ${result.holder.instanceId}`);
        return this.retryDelay(result.remainingMs);
      case 'barrier':
        this.observed = null;
        this.setRole('standby', 'waiting out the data-loss barrier');
        if (firstTimeSeen) {
          log.warn({ remaining_ms: result.remainingMs }, 'the fencing counter was missing (Redis lost its data?): nobody leads until one full TTL has passed');
        }
        return this.retryDelay(result.remainingMs);
      case 'anomaly':
        this.observed = null;
        if (firstTimeSeen) {
          log.warn({ reason: result.reason, detail: result.detail, lock_key: lock.lockKey }, 'the lock key does not hold a GRINDER lease; treating it as held by someone else');
        }
        this.setRole('standby', 'lock key holds something else');
        return this.retryDelay(result.remainingMs);
    }
  }

  private async renewOnce(held: HeldLease): Promise<number> {
    const { clock, lock, timing, log } = this.opts;
    const sentAt = clock.now();
    let result;
    try {
      result = await lock.renew(held.lease);
    } catch (err) {
      this.onUnavailable(err, 'renew');
      // The lease may still be ours: keep it until the deadline and try again soon.
      this.enforceDeadline();
      return this.held ? timing.renewRetryMs : timing.renewIntervalMs;
    }
    if (this.held !== held) return 0; // stepped down while waiting (deadline or resign)
    switch (result.kind) {
      case 'renewed': {
        if (clock.now() >= held.validUntil) {
          // Too late to extend a deadline that has passed: step down, and the next acquire
          // replaces our own leftover with a new leadership.
          this.enforceDeadline();
          return 0;
        }
        held.validUntil = sentAt + timing.leaseValidityMs;
        this.lastRenewOkAt = sentAt;
        this.armDeadline();
        return Math.max(0, sentAt + timing.renewIntervalMs - clock.now());
      }
      case 'lost':
        if (result.holder) this.observe(result.holder, result.remainingMs, sentAt);
        this.stepDown(result.holder ? `lease taken over by ${result.holder.instanceId}` : 'lease expired before it was renewed');
        return 0;
      case 'anomaly':
        log.warn({ reason: result.reason, detail: result.detail }, 'the lock key was overwritten with something that is not a GRINDER lease');
        this.stepDown('lock key overwritten');
        return timing.renewIntervalMs;
    }
  }

  /** Never wait past the holder's expiry, never spin: the soonest useful moment to try again. */
  private retryDelay(remainingMs: number): number {
    const { renewIntervalMs } = this.opts.timing;
    if (remainingMs < 0) return renewIntervalMs; // no expiry on the key
    return Math.min(renewIntervalMs, remainingMs + 1);
  }

  private observe(holder: Holder, remainingMs: number, at: number): void {
    this.observed = { holder, remainingMs, observedAt: at };
  }

  private onUnavailable(err: unknown, operation: string): void {
    const reason = err instanceof LockUnavailableError ? err.reason : 'unexpected';
    this.opts.log.warn({ operation, reason, err: errMessage(err) }, `lease ${operation} failed`);
  }

  private enforceDeadline(): void {
    if (this.held && this.opts.clock.now() >= this.held.validUntil) {
      this.stepDown('lease deadline passed without a successful renewal');
    }
  }

  private stepDown(reason: string): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    this.clearTimer('deadlineTimer');
    held.controller.abort(new Error(`no longer ACTIVE: ${reason}`));
    this.setRole('standby', reason, held);
  }

  private armDeadline(): void {
    this.clearTimer('deadlineTimer');
    const held = this.held;
    if (!held) return;
    this.deadlineTimer = this.opts.clock.setTimeout(() => {
      this.deadlineTimer = null;
      this.enforceDeadline();
      if (!this.held) this.kick('lease deadline passed');
    }, held.validUntil - this.opts.clock.now());
  }

  /**
   * Every role change is one log line with the monotonic time (mono_ms, CLOCK_MONOTONIC, the same
   * clock for every process on a host). When a leadership ends, valid_until_mono_ms says until when
   * it was valid: after a long pause the line is written late, but the leadership ended then.
   */
  private setRole(next: Role, reason: string, ended?: HeldLease): void {
    const from = this.role;
    if (from === next) return;
    this.role = next;
    const ms = (t: number): number => Math.round(t * 1000) / 1000;
    this.opts.log.info(
      {
        from,
        to: next,
        reason,
        token: ended?.lease.token ?? this.held?.lease.token ?? this.lastToken,
        mono_ms: ms(this.opts.clock.now()),
        ...(ended ? { valid_until_mono_ms: ms(Math.min(ended.validUntil, this.opts.clock.now())) } : {}),
      },
      'role changed',
    );
    this.opts.onTransition?.(from, next);
  }

  private startWork(held: HeldLease): void {
    const work = this.work;
    if (!work) return;
    const ctx: LeaderContext = {
      signal: held.controller.signal,
      token: held.lease.token,
      instanceId: this.opts.instanceId,
      isLeader: () => {
        this.enforceDeadline();
        return this.held === held;
      },
      resign: (reason: string) => {
        if (this.held !== held) return;
        this.stepDown(`resigned: ${reason}`);
        // Hand the key back so a rightful leader is not kept waiting for our expiry.
        this.opts.lock.release(held.lease).catch(() => undefined);
        this.kick('resigned');
      },
    };
    const run = (async () => {
      try {
        await work(ctx);
      } catch (err) {
        if (!ctx.signal.aborted) this.opts.log.error({ err: errMessage(err) }, 'leader work failed');
      }
    })();
    this.workRuns.add(run);
    void run.finally(() => this.workRuns.delete(run));
  }

  private async settleWork(graceMs: number): Promise<void> {
    if (this.workRuns.size === 0) return;
    let timer: TimerHandle | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = this.opts.clock.setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.allSettled([...this.workRuns]), grace]);
    if (timer) this.opts.clock.clearTimeout(timer);
  }

  private clearTimer(which: 'tickTimer' | 'deadlineTimer'): void {
    const t = this[which];
    if (t) this.opts.clock.clearTimeout(t);
    this[which] = null;
  }
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
