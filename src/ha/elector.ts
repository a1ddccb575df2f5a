import type { Logger } from 'pino';
import type { Clock, TimerHandle } from './clock';
import {
  acquireAnswered,
  acquireFailed,
  announced,
  backoffLeft,
  disconnected,
  electionView,
  handedOver,
  initialState,
  isLeading,
  judgeDeadline,
  planAcquire,
  planRenew,
  renewAnswered,
  renewFailed,
  resigned,
  roleOf,
  steppedDown,
  type Effect,
  type ElectionRules,
  type ElectionState,
  type EventStep,
  type HeldLease,
  type Next,
  type Now,
  type Step,
} from './election';
import {
  LockUnavailableError,
  type AcquireResult,
  type BarrierReason,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type ReleaseResult,
  type RenewResult,
  type SwitchoverRequest,
} from './lock';
import type { HaSnapshot, HaStatusSource, LeaderContext, LeaderWork, Role } from './role';
import type { LeaseTiming } from './timing';
import { errMessage } from '../error-text';

export interface ElectorOptions {
  instanceId: string;
  timing: LeaseTiming;
  lock: LeaseLock;
  clock: Clock;
  log: Logger;
  /** Told about every role change, after it happened. */
  onTransition?: (from: Role, to: Role) => void;
  /** Told when an acquire wrote a barrier (rollback or data loss detected). */
  onBarrier?: (reason: BarrierReason) => void;
}

/**
 * Runs the election: the loop, the timers, the leader work and the status view around the pure
 * decision in election.ts (where SAFETY says what the lease guarantees and assumes). Every change
 * of the election state goes through `commit`, which keeps the decided state first and then
 * performs its effects in order, so a listener that runs during an effect (the work's abort
 * signal) already sees the new state.
 */
export class LeaderElector implements HaStatusSource {
  private readonly opts: ElectorOptions;
  private readonly rules: ElectionRules;
  private state: ElectionState;
  private lastTickAt: number | null = null;
  private tickTimer: TimerHandle | null = null;
  private tickDueAt: number | null = null;
  private deadlineTimer: TimerHandle | null = null;
  private ticking: Promise<void> | null = null;
  private rerunAfterTick = false;
  private started = false;
  private stopped = false;
  private work: LeaderWork | null = null;
  private workRuns = new Set<Promise<void>>();
  /** The signal of the current leadership's work, by its token. */
  private workSignal: { token: number; controller: AbortController } | null = null;
  /** A planned switchover is handing our lease to a successor: nothing else may free it meanwhile. */
  private handingOver = false;
  /** Resolves when the switchover in progress has sent its handoff or given up; stop() waits for it before closing. */
  private handoffSettled: Promise<void> = Promise.resolve();
  /** Wakes every sleepUnlessStopped() in progress (stop). */
  private readonly sleepers = new Set<() => void>();
  /** A lease we resigned that is to be released once the leader work has ended. */
  private releaseAfterWork: GivenUp | null = null;

  constructor(opts: ElectorOptions) {
    this.opts = opts;
    this.rules = { instanceId: opts.instanceId, timing: opts.timing, lockKey: opts.lock.lockKey };
    this.state = initialState(this.rules);
    opts.lock.subscribe((event) => this.onLockEvent(event));
  }

  /** Registers the work to run while ACTIVE. Call once, before start(). */
  onLeading(work: LeaderWork): void {
    if (this.work) throw new Error('onLeading() was called twice; register one leader work per elector');
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
    return roleOf(this.state);
  }

  snapshot(): HaSnapshot {
    this.enforceDeadline();
    const now = this.opts.clock.now();
    const { timing, lock } = this.opts;
    // Ticks come at most one renew interval plus one Redis timeout apart (config validation keeps
    // that under the TTL), so a loop that has not ticked for a whole TTL is stuck.
    const loopHealthy = this.lastTickAt === null || now - this.lastTickAt <= timing.ttlMs;
    const facts = lock.facts();
    return {
      ...electionView(this.state, this.opts.instanceId, now),
      haEnabled: true,
      redisConnected: lock.isConnected(),
      loopHealthy,
      redisMaxmemoryPolicy: facts.maxmemoryPolicy,
      redisDurable: facts.durable,
      redisMode: facts.mode,
      redisMaster: facts.master,
      replicasAcked: facts.replicasAcked,
    };
  }

  /**
   * Stops electing: aborts the leader work and waits for it, at most `workGraceMs`. If it ended
   * before the lease deadline, the lease (if held) is released so the next replica takes over at
   * once; if it still runs, or ended too late, the lease is not released and runs out by itself
   * (one TTL after the last renewal). Then closes the lock.
   */
  async stop(workGraceMs = 2_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer('tickTimer');
    this.clearTimer('deadlineTimer');
    for (const wake of this.sleepers) wake();
    this.sleepers.clear();
    await this.ticking;
    // A suspend just before it: the lease may be over already, and then there is nothing to release.
    this.enforceDeadline();
    const { held } = this.commit(steppedDown(this.rules, this.state, 'shutting down', 'replica is shutting down'));
    const givenUp = held ? this.givenUp(held) : null;
    const ended = await this.workEndedWithin(workGraceMs);
    // A resignation still waiting for its work to end hands its release over to the stop.
    const pending = givenUp ?? this.releaseAfterWork;
    const toRelease = pending?.lease ?? null;
    this.releaseAfterWork = null;
    if (toRelease && !ended) {
      this.opts.log.warn(
        { token: toRelease.token, grace_ms: workGraceMs },
        'the leader work did not end within the stop grace; the lease is not released and runs out by itself (the next replica takes over one TTL after the last renewal)',
      );
    } else if (pending && !this.mayStillSend(pending)) {
      this.opts.log.warn(
        { token: pending.lease.token },
        'the leader work ended too close to the lease deadline (or after it, or after a host suspend); the lease is not released and runs out by itself',
      );
    } else if (toRelease) {
      try {
        const r = await this.opts.lock.release(toRelease);
        this.opts.log.info({ token: toRelease.token, result: r.kind }, 'lease released on shutdown');
      } catch (err) {
        this.opts.log.warn(
          { token: toRelease.token, ...unloggedError(err) },
          'could not release the lease on shutdown; the next replica takes over when it expires',
        );
      }
    }
    // A switchover that this stop overtook sends its handoff once the work has ended (its retries,
    // not its first try, are cut short): closing the connection first would lose it. Not while the
    // work still runs: that wait could last until the lease deadline, past the stop's grace.
    if (ended) await this.handoffSettled;
    await this.opts.lock.close();
  }

  /**
   * A planned switchover (`grinder switchover`): stop leading, wait for the leader work to end,
   * then hand the lease to `successor`, who takes it at once. If the work is still running at the
   * lease deadline, nothing is handed over: the lease runs out and a standby takes it over then.
   */
  async handOver(successor: string): Promise<'handed_over' | 'not_leader' | 'work_still_running' | 'lost'> {
    // A leader woken from a pause reads the request before its overdue deadline timer runs.
    this.enforceDeadline();
    if (this.state.kind !== 'leading' || this.handingOver) return 'not_leader';
    if (successor === this.opts.instanceId) return 'not_leader';
    this.handingOver = true;
    let settled = (): void => undefined;
    this.handoffSettled = new Promise<void>((resolve) => (settled = resolve));
    try {
      const { held } = this.commit(steppedDown(this.rules, this.state, `switchover to ${successor}`));
      if (!held) return 'not_leader';
      const givenUp = this.givenUp(held);
      if (!(await this.workEndedWithin(held.validUntil - this.opts.clock.now()))) {
        this.opts.log.warn(
          { successor, token: held.lease.token },
          'switchover: the leader work did not end before the lease deadline; nothing handed over, the lease runs out by itself',
        );
        return 'work_still_running';
      }
      const r = await this.handOverBeforeDeadline(givenUp, successor);
      if (r === 'deadline') {
        this.opts.log.warn(
          { successor, token: held.lease.token },
          'switchover: too close to the lease deadline (or after it, or after a host suspend) to send the handoff; nothing handed over, the lease runs out by itself',
        );
        return 'lost';
      }
      if (r.kind !== 'released') return 'lost';
      this.commit(handedOver(this.rules, this.state, r.ver, successor, held.lease.token, this.moment()));
      this.opts.log.info({ successor, token: held.lease.token }, `handed the lease over to ${successor}`);
      return 'handed_over';
    } catch (err) {
      this.opts.log.warn(
        { successor, ...unloggedError(err) },
        'switchover: handing the lease over failed; it runs out by itself and a standby takes it over then',
      );
      return 'lost';
    } finally {
      this.handingOver = false;
      settled();
    }
  }

  /** The lease a step-down gave up, with the moment it did, on both clocks. */
  private givenUp(held: HeldLease): GivenUp {
    return { lease: held.lease, validUntil: held.validUntil, mono: this.opts.clock.now(), wall: this.opts.clock.wallNow() };
  }

  /**
   * Whether a release or handoff of a lease given up may still be sent (SAFETY, "Leader work and
   * the lease"): more than one retry interval before its deadline, and no host suspend since the
   * step-down (CLOCK_MONOTONIC stands still then, so the wall clock moves on further than it).
   * Judged right before each send: a timer may fire late (a busy loop, a pause).
   */
  private mayStillSend(g: GivenUp): boolean {
    const { clock, timing } = this.opts;
    const suspended = clock.wallNow() - g.wall - (clock.now() - g.mono) > timing.safetyMarginMs;
    return clock.now() < g.validUntil - timing.renewRetryMs && !suspended;
  }

  /**
   * The handoff call, tried again while Redis is away and mayStillSend() holds. A request that
   * waited in the socket while this replica was paused or cut off is read before the broken
   * connection is noticed; giving up on the first failure would cost the cluster a whole TTL. A
   * try that timed out but ran is seen as our own handoff by the next (handoff-1.lua).
   */
  private async handOverBeforeDeadline(g: GivenUp, successor: string): Promise<ReleaseResult | 'deadline'> {
    const token = g.lease.token;
    let failure: LockUnavailableError | null = null;
    // A stop cuts the retries short, not the first try: a switchover that stop() overtakes while the
    // work ends still hands over (stop has no lease left to release then).
    const mayTry = (): boolean => (failure === null || !this.stopped) && this.mayStillSend(g);
    for (;;) {
      if (!mayTry()) {
        if (failure) throw failure;
        return 'deadline';
      }
      if (failure) this.opts.log.info({ successor, token }, 'switchover: trying the handoff again');
      try {
        const r = await this.opts.lock.handOver(g.lease, successor);
        if (r.kind !== 'released' && failure?.reason === 'timeout') {
          this.opts.log.info(
            { successor, token },
            'switchover: the record is no longer ours; the earlier try that timed out may have handed it over (grinder list shows who leads)',
          );
        }
        return r;
      } catch (err) {
        if (!(err instanceof LockUnavailableError)) throw err;
        failure = err;
        do {
          await this.sleepUnlessStopped(this.opts.timing.renewRetryMs);
        } while (!this.opts.lock.isConnected() && mayTry());
      }
    }
  }

  /** A wait that stop() cuts short. */
  private sleepUnlessStopped(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = this.opts.clock.setTimeout(() => {
        this.sleepers.delete(wake);
        resolve();
      }, ms);
      const wake = (): void => {
        this.opts.clock.clearTimeout(timer);
        resolve();
      };
      this.sleepers.add(wake);
    });
  }

  /** The moment a decision is taken, with what only the loop knows: whether a leadership is still being left. */
  private moment(): Now {
    const { clock } = this.opts;
    return { mono: clock.now(), wall: clock.wallNow(), workEnding: this.workRuns.size > 0, handingOver: this.handingOver };
  }

  /** Keeps the decided state, then performs its effects in order. */
  private commit<S extends Step>(step: S): S {
    this.state = step.state;
    for (const effect of step.effects) this.perform(effect);
    return step;
  }

  private commitEvent(step: EventStep): void {
    this.commit(step);
    this.follow(step.next);
  }

  private perform(effect: Effect): void {
    const { log, lock, clock } = this.opts;
    switch (effect.kind) {
      case 'role':
        this.roleChanged(effect.from, effect.to, effect.reason, effect.token, effect.ended);
        return;
      case 'abort_work': {
        const signal = this.workSignal;
        if (signal && signal.token === effect.token) {
          this.workSignal = null;
          signal.controller.abort(new Error(effect.why));
        }
        return;
      }
      case 'start_work':
        this.startWork(effect.held);
        return;
      case 'arm_deadline':
        this.clearTimer('deadlineTimer');
        if (effect.at === null) return;
        this.deadlineTimer = clock.setTimeout(() => {
          this.deadlineTimer = null;
          this.enforceDeadline();
          if (this.state.kind !== 'leading') this.kick('lease deadline passed');
        }, effect.at - clock.now());
        return;
      case 'release':
        lock.release(effect.lease).catch(() => undefined);
        return;
      case 'release_after_work':
        this.releaseOnceWorkEnded(this.givenUp(effect.held));
        return;
      case 'abandon':
        lock.abandon().catch(() => undefined);
        return;
      case 'barrier':
        this.opts.onBarrier?.(effect.reason);
        return;
      case 'log':
        log[effect.level](effect.fields, effect.msg);
        return;
    }
  }

  private follow(next: Next): void {
    switch (next.kind) {
      case 'keep':
        return;
      case 'kick':
        this.kick(next.why);
        return;
      case 'in':
        this.schedule(next.ms);
        return;
      case 'not_later_than': {
        const now = this.opts.clock.now();
        if (!this.ticking && (this.tickDueAt === null || now + next.ms < this.tickDueAt)) this.schedule(next.ms);
        return;
      }
    }
  }

  private enforceDeadline(): void {
    if (this.state.kind === 'leading') this.commit(judgeDeadline(this.rules, this.state, this.moment()));
  }

  private onLockEvent(event: LockEvent): void {
    // Stopped: what the store says no longer changes anything, /status included.
    if (this.stopped) return;
    switch (event.kind) {
      case 'connected':
        if (this.state.kind !== 'leading') this.kick('connection ready');
        return;
      case 'disconnected':
        this.commit(disconnected(this.rules, this.state));
        return;
      case 'announcement':
        this.commitEvent(announced(this.rules, this.state, event.announcement, this.moment()));
        return;
      case 'switchover':
        this.onSwitchoverRequest(event.request);
    }
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
    if (this.stopped) return;
    this.clearTimer('tickTimer');
    const delay = Math.max(0, delayMs);
    this.tickDueAt = this.opts.clock.now() + delay;
    this.tickTimer = this.opts.clock.setTimeout(() => {
      this.tickTimer = null;
      this.tickDueAt = null;
      // One lease call at a time (a resignation schedules its look while a renewal may still be on
      // its way): a tick that falls due meanwhile runs right after the one in flight.
      if (this.ticking) {
        this.rerunAfterTick = true;
        return;
      }
      this.ticking = this.tick().finally(() => {
        this.ticking = null;
      });
    }, delay);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.lastTickAt = this.opts.clock.now();
    this.enforceDeadline();
    let next: number;
    try {
      next = this.state.kind === 'leading' ? await this.renewOnce(this.state) : await this.acquireOnce();
    } catch (err) {
      // A bug, not an outage: keep the loop alive and say so loudly.
      this.opts.log.error({ err }, 'election tick failed unexpectedly');
      next = this.opts.timing.renewIntervalMs;
    }
    if (this.stopped) return;
    if (this.rerunAfterTick && this.state.kind !== 'leading') next = Math.min(next, backoffLeft(this.state, this.opts.clock.now()));
    this.rerunAfterTick = false;
    this.schedule(next);
  }

  /** Returns the delay until the next tick. The instrumented lock has logged and counted any failure. */
  private async renewOnce(leading: Extract<ElectionState, { kind: 'leading' }>): Promise<number> {
    const sent = planRenew(leading, this.moment());
    let result: RenewResult;
    try {
      result = await this.opts.lock.renew(sent.held.lease);
    } catch (err) {
      return this.commit(renewFailed(this.rules, this.state, sent, timedOut(err), this.moment())).delayMs;
    }
    return this.commit(renewAnswered(this.rules, this.state, sent, result, this.moment())).delayMs;
  }

  /** Returns the delay until the next tick. */
  private async acquireOnce(): Promise<number> {
    const { lock } = this.opts;
    const sent = planAcquire(this.rules, this.state, this.moment());
    let result: AcquireResult;
    try {
      result = await lock.acquire(sent.request);
    } catch (err) {
      return this.commit(acquireFailed(this.rules, this.state, sent, timedOut(err))).delayMs;
    }
    if (this.stopped) {
      // Shutting down while the acquire was in flight: do not lead, hand it back (by the rule for
      // any lease given up, its validity counted from the send).
      if (result.kind !== 'acquired') return 0;
      const g: GivenUp = { lease: result.lease, validUntil: sent.sentAt + this.opts.timing.leaseValidityMs, mono: sent.sentAt, wall: sent.sentWall };
      if (this.mayStillSend(g)) await lock.release(result.lease).catch(() => undefined);
      return 0;
    }
    return this.commit(acquireAnswered(this.rules, this.state, sent, result, this.moment())).delayMs;
  }

  /**
   * Every role change is one log line with the monotonic time (mono_ms, CLOCK_MONOTONIC, the same
   * clock for every process on a host). When a leadership ends, valid_until_mono_ms says until when
   * it was valid: after a long pause the line is written late, but the leadership ended then.
   */
  private roleChanged(from: Role, to: Role, reason: string, token: number | null, ended: HeldLease | null): void {
    const ms = (t: number): number => Math.round(t * 1000) / 1000;
    const now = this.opts.clock.now();
    this.opts.log.info(
      { from, to, reason, token, mono_ms: ms(now), ...(ended ? { valid_until_mono_ms: ms(Math.min(ended.validUntil, now)) } : {}) },
      'role changed',
    );
    this.opts.onTransition?.(from, to);
  }

  /**
   * Supervises one run of the leader work: it gets a signal that fires when this replica stops
   * being ACTIVE. Work that returns or throws while still leading makes the replica resign (with
   * back-off): ACTIVE with nothing running would be a leader that does no work. Only one run at a
   * time: no acquire while a run is still ending (planAcquire), and the lease is released only
   * after the run has ended (resign, stop, switchover).
   */
  private startWork(held: HeldLease): void {
    const work = this.work;
    const token = held.lease.token;
    // A listener told of the new role may already have ended this leadership (a deadline judged late).
    if (!work || !isLeading(this.state, token)) return;
    const controller = new AbortController();
    this.workSignal = { token, controller };
    const ctx: LeaderContext = {
      signal: controller.signal,
      token,
      instanceId: this.opts.instanceId,
      isLeader: () => {
        this.enforceDeadline();
        return isLeading(this.state, token);
      },
      resign: (reason: string) => this.resign(token, reason),
    };
    const run = (async () => {
      // Registered in workRuns before the work runs a single line: a resign() or handOver() from
      // its synchronous start must already see it running.
      await Promise.resolve();
      let ending: string;
      try {
        await work(ctx);
        ending = 'leader work returned';
      } catch (err) {
        if (ctx.signal.aborted) return;
        this.opts.log.error({ err }, 'leader work failed');
        ending = `leader work failed: ${errMessage(err)}`;
      }
      this.resign(token, ending);
    })();
    this.workRuns.add(run);
    void run.finally(() => {
      this.workRuns.delete(run);
      // The next leadership waited for this run to end; look again now rather than at the next tick.
      if (this.state.kind !== 'leading' && this.workRuns.size === 0) this.kick('the previous leader work ended');
    });
  }

  private resign(token: number, reason: string): void {
    // A suspend just before it: the lease may be over already, and then there is nothing to release.
    this.enforceDeadline();
    this.commitEvent(resigned(this.rules, this.state, token, reason, this.moment()));
  }

  /** Hands the key back so a rightful leader is not kept waiting for our expiry, once the work has ended. */
  private releaseOnceWorkEnded(g: GivenUp): void {
    this.releaseAfterWork = g;
    void this.workEnded().then(() => {
      // Stopping meanwhile: stop() releases it (or not, if the work outlasts its grace).
      if (this.stopped || this.releaseAfterWork !== g) return;
      this.releaseAfterWork = null;
      if (!this.mayStillSend(g)) {
        this.opts.log.warn(
          { token: g.lease.token },
          'the leader work ended too close to the lease deadline (or after it, or after a host suspend); the lease is not released and runs out by itself',
        );
        return;
      }
      this.opts.lock.release(g.lease).catch(() => undefined);
    });
  }

  private onSwitchoverRequest(request: SwitchoverRequest): void {
    if (request.from !== this.opts.instanceId) return;
    this.enforceDeadline();
    // Meant for the leadership the operator saw: a request published again (a Redis blip) must
    // not end the next one.
    if (!isLeading(this.state, request.token)) {
      this.opts.log.warn(
        { request_id: request.id, to: request.to, token: request.token },
        'switchover requested for a leadership this replica does not hold (any more); nothing to do',
      );
      return;
    }
    this.opts.log.info({ request_id: request.id, to: request.to }, `switchover requested: handing the lease over to ${request.to}`);
    void this.handOver(request.to);
  }

  private workEnded(): Promise<void> {
    return Promise.allSettled([...this.workRuns]).then(() => undefined);
  }

  /** Whether every run of the leader work ended within `ms` (true at once when none runs). */
  private async workEndedWithin(ms: number): Promise<boolean> {
    if (this.workRuns.size === 0) return true;
    if (ms <= 0) return false;
    let timer: TimerHandle | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = this.opts.clock.setTimeout(() => resolve(false), ms);
    });
    const ended = await Promise.race([this.workEnded().then(() => true), timeout]);
    if (timer) this.opts.clock.clearTimeout(timer);
    return ended;
  }

  private clearTimer(which: 'tickTimer' | 'deadlineTimer'): void {
    const t = this[which];
    if (t) this.opts.clock.clearTimeout(t);
    this[which] = null;
    if (which === 'tickTimer') this.tickDueAt = null;
  }
}

/** A lease this replica stepped down from, still to be released or handed over, and when it stepped down. */
interface GivenUp {
  readonly lease: Lease;
  readonly validUntil: number;
  readonly mono: number;
  readonly wall: number;
}

/**
 * A lock failure was already logged, once and with the error, by the instrumented lock: here only
 * what happens next. Anything else (a bug) is logged with its stack.
 */
function unloggedError(err: unknown): { err?: unknown } {
  return err instanceof LockUnavailableError ? {} : { err };
}

/** A timed-out call may still have run in the store; any other failure did not reach it or was refused. */
function timedOut(err: unknown): boolean {
  return err instanceof LockUnavailableError && err.reason === 'timeout';
}
