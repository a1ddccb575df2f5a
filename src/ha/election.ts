import { MAX_TTL_MS, type AcquireRequest, type AcquireResult, type Announcement, type BarrierReason, type Lease, type RenewResult } from './lock';
import type { HaSnapshot, Role } from './role';
import type { LeaseTiming } from './timing';
import { EMPTY_WATCH, eligibleAt, eligibleVer, sawVersion, wasReplaced, type VersionWatch } from './watch';

/*
 * The election decision, as pure functions: (state, what happened, now) → (state, when to look
 * next, effects). Nothing here waits, reads a clock or talks to Redis; LeaderElector (elector.ts)
 * runs the loop and the timers, performs the effects, and serves the status view from the state.
 */

/*
 * SAFETY — what the lease does and does not guarantee, and what it assumes.
 *
 * Model. One Redis key holds the lease record: state (held, free, barrier), fencing token, the
 * holder's TTL and session, and a random version that every change replaces. The record never
 * expires in Redis. Acquire, renew and release are Lua scripts, so each compare-and-set runs
 * atomically on the Redis server; a script that runs after its caller gave up waiting is harmless
 * (each script header says why).
 *
 * The holder's deadline. A replica notes its monotonic clock at the moment it SENDS an acquire or
 * renew (t0) and calls itself ACTIVE only until t0 + TTL − safetyMargin. The margin covers clock
 * rate drift between hosts (1% of the TTL; NTP slews far less) and a step-down timer firing late
 * (25 ms). The deadline is checked whenever anyone asks for the role (/readyz, /metrics,
 * LeaderContext.isLeader(), every loop tick), so after a pause (GC, SIGSTOP, a suspended VM) the
 * first question already sees that it passed and answers STANDBY.
 *
 * Taking over. Nothing expires in Redis; expiry lives in the standbys. A standby may take over a
 * record version only after it has watched that version stand still for the longest TTL it knows
 * any holder used (the record's TTL and max TTL, its own, and every TTL it has seen), measured on
 * its own monotonic clock from the ARRIVAL of the first reply or announcement that showed it. The
 * acquire then succeeds only if that exact version is still current. Since the version was written
 * at or after its writer sent the write, the holder's deadline (send time + TTL − margin) has
 * passed before any takeover of it. Exceptions, all safe: a version whose release we heard
 * announced (the holder had stepped down, and its leader work had ended, before releasing), a
 * handoff naming us whose announcement we heard (the same, for a planned switchover: `grinder
 * switchover`), and, while the connection has not broken since, a version we wrote ourselves and
 * a free record (or a handoff naming us) we watched the record change to. A handoff naming another
 * replica is waited out like a held lease, so a successor that never comes costs one TTL. Every break
 * in the connection forgets everything watched (see rollbacks below), so a free record or our own
 * version seen for the first time after one is watched for the full wait like any other.
 * Every renewal writes a new version and announces it, so standbys restart their wait from it
 * within a millisecond and take over a crashed holder right after its lease would have ended.
 *
 * What Redis can do to the keys, and what protects against each:
 * - Wall-clock steps on the Redis host. Redis key expiry follows Redis' wall clock, which is why
 *   no lease decision depends on it. Redis' clock only seeds fencing tokens (below), where a step
 *   forward only makes tokens larger and a step back is covered by the counter, the fence and
 *   every replica's floor.
 * - Eviction and deletion. The record, counter and fence have no expiry, so volatile-* eviction
 *   policies never pick them. allkeys-* policies, DEL and FLUSHALL can remove them: a missing
 *   record makes the next acquire write a barrier (a clean release leaves a free record, so a
 *   missing one always means something removed it), and nobody leads until the barrier has stood
 *   for the longest TTL known, which outlasts any deadline of a holder from before. Use
 *   maxmemory-policy noeviction; anything else is reported at error level, in /status and as
 *   grinder_ha_redis_maxmemory_policy.
 * - Data rolled back (an RDB restore, AOF everysec after a power loss, a lagging replica promoted).
 *   Each replica remembers the highest token it has seen and passes it as a floor; an acquire
 *   that finds the floor above everything Redis knows writes a barrier and raises the counter.
 *   Tokens are max(counter, fence, record, floor) + 1 and never below Redis' clock in
 *   microseconds, so a rolled-back counter cannot hand a token out twice even when no replica
 *   remembers the newer one, unless Redis' clock is also behind. A restart can bring back older
 *   data even where Redis says it keeps every acknowledged write (appendfsync always: an operator
 *   restores a backup), so every standby starts its wait again after any break in the connection,
 *   and a rolled-back record (our own or a free one included) is watched for a full TTL like a new
 *   one. A version that comes back without a break (old data written back by hand, DEBUG RELOAD)
 *   is noticed when a look sent after its successor was seen finds it, and watched afresh too. The
 *   holder, still inside its deadline, renews its own leadership by token and session and keeps
 *   leading through a Redis restart; a leader whose deadline passed while Redis was away, and
 *   every standby, lead again one TTL after Redis is back (the cost of the rule above).
 * - A failover (Sentinel promoting a replica, a Cluster slot moving to a replica). Replication is
 *   asynchronous, so every lease write (acquire, renew, barrier) counts only once WAIT reports the
 *   required replicas have it, bounded by half the command timeout; a write they do not
 *   acknowledge is a failure (a renewal keeps the lease only until its deadline, an acquisition is
 *   handed back). GRINDER_REDIS_MIN_REPLICAS 'auto' is one once a replica saw the current master
 *   with a replica (a high-water mark per master, not the replicas connected right now): a master
 *   cut off from its replicas (the leader on its side of a partition) sees none after repl-timeout,
 *   and counting writes there would let the leader go on while a replica is promoted and a standby
 *   takes over on it. What 'auto' leaves open: a GRINDER replica that STARTS while its only route
 *   is to such a cut-off old master (whose Sentinels still name it) never saw it with a replica
 *   and may lead there, beside the leader on the promoted one. GRINDER_REDIS_MIN_REPLICAS=1 closes
 *   that, at the price of no leader while the master has no replica (docker-compose.sentinel.yml
 *   sets it: two replicas). Exact guarantee: if the replica that gets promoted is one that
 *   acknowledged, it has every lease write that counted; if another is promoted (more replicas
 *   than required, or none required), it may be behind, which is the rollback case above.
 *   Sentinel moves the connection (a break); a Cluster client follows a slot failover on
 *   connections that stay up, so a change of the node serving the lock key counts as a break too.
 *   Either way every standby then waits a full TTL, unless the holder, still inside its deadline,
 *   renews its own leadership on the new master.
 * - Corrupt values. A counter, fence or record token that is not a safe integer, or is above any
 *   token GRINDER hands out (1.5 × 2^52: tokens start at Redis' clock in microseconds, 2^52 in
 *   2112), counts as absent: the next acquire rewrites the counter and the next fenced write the
 *   fence, so a huge value cannot use up the tokens below 2^53. A string at the lock key that is
 *   not a record is taken over like any version once it stood still; a key of another Redis type
 *   is never overwritten (it is somebody's data): the replicas stay STANDBY and say so.
 * - Memory full under noeviction: Redis refuses the lease scripts (OOM), so nobody can acquire or
 *   renew and the leader steps down at its deadline. Safe, but no leader until memory is freed.
 *
 * A brand-new cluster (`grinder init`). On a Redis with no record, counter or fence the first acquire
 * writes the data-loss barrier: it cannot tell a new Redis from one that lost its data under a
 * leader. `grinder init` is the operator's statement that no replica has led on this lock key: it
 * writes an init key (refused where a record, counter or fence exists; it expires after its window,
 * 60 s by default), and an acquire that finds record, counter and fence missing and that key present
 * leads at once instead, deleting the key (a barrier deletes it too). Only a replica that has seen
 * no record, no announcement and no break in its connection since it started may use it, and only
 * while no other live member of the cluster view reports having seen a token (the veterans key:
 * every replica registers, and registers again right after its connection comes back), so a
 * replica running across a restore or a data loss writes the barrier, as before, and a replica
 * that starts beside one that led does not believe the declaration. Left open: the statement
 * being false while the replicas that know better are silent. A Redis that lost GRINDER's data,
 * or went back to a state with the init key but without the first leadership (a restore, a lost
 * AOF tail, a failover to a replica that missed it, all within the window), where a newly started
 * replica acquires before any old replica has registered again (each does within a command
 * timeout of its reconnect) and while an old leader is still inside its lease.
 *
 * Leader work and the lease. One run of the leader work at a time: a replica does not acquire while
 * an earlier run is still ending. After a step-down, resignation, switchover or stop, the lease is
 * released or handed over only once the run has ended; the replica stops renewing when it steps
 * down, so a run that ignores its signal keeps everyone out until the lease runs out (one TTL after
 * the last renewal) and no longer. Work that must not overlap a successor's is fenced (below).
 * The release or handoff that follows is sent (a handoff, while Redis is away, sent again) only
 * while the deadline of the lease it gives up is more than one renew-retry interval away, judged
 * on both clocks; later, the lease runs out by itself. A record that a restore brings back after
 * another replica led may name the old holder again, and a late release would free it (a standby
 * then takes it at once) and a late handoff pass it on, while that other leader has not yet
 * noticed. One exception: an acquire answered too late (or after a suspend) is handed back at
 * once, in the same turn that reads the answer, so no restore and reconnect can come in between,
 * and its compare-and-set touches only the record that acquire wrote.
 *
 * What it does NOT guarantee. A leader's side effects can still land after its lease ended: a
 * request it sent before a pause can arrive later, and code that does not check the signal keeps
 * running. The lease only bounds when a replica *believes* it leads. Work that must never overlap
 * has to be fenced: every leadership gets a token greater than all earlier ones, and the store
 * that receives the work must reject a token lower than one it has seen (see live/fence).
 *
 * Host suspend. On Linux CLOCK_MONOTONIC stands still while the host is suspended, so a suspended
 * holder would see too little time pass. Every time the deadline is judged, the holder compares
 * how far its wall clock and its monotonic clock moved since the last time (the first time: since
 * it sent the acquire that won the lease, so a suspend while that acquire was out counts too, and
 * such an answer is handed back at once); more wall time than the safety margin allows means a
 * suspend, and it steps down at once (a wall-clock step forward looks the same and costs one
 * needless step-down). A release or handoff after a step-down is judged the same way (above). A
 * suspended standby only waits longer.
 *
 * Assumptions. (1) The clocks of the replicas' hosts run at rates within 1% of each other (steps
 * of any clock do not matter: every duration is measured on one host's monotonic clock; but a
 * step of the holder's wall clock back by as much as a suspend lasted hides that suspend). A VM
 * paused by its hypervisor in a way that stops both clocks is a process pause like SIGSTOP and is
 * covered by judging the deadline when asked. (2) Only GRINDER writes to the lock key and the
 * derived keys; an operator may delete them, but writing an old record version back by hand
 * while a replica watches defeats the version check. (3) After a Redis restart or failover that
 * may have lost writes, the replicas' connections break, which every standby notices; a proxy
 * that hides a restart or failover from the client hides the break too. (4) Every
 * replica of one lock key runs the same GRINDER version (see the upgrade note in the README).
 */

/** What a replica knows about its world, whatever its role: kept across leaderships. */
export interface Memory {
  /** The highest fencing token seen anywhere: passed to every acquire as a floor. */
  readonly floor: number;
  /** The longest TTL any holder is known to have used, this replica's own included. */
  readonly maxTtlSeen: number;
  readonly watch: VersionWatch;
  /** What the last look at the record showed, for /status. */
  readonly seen: Seen | null;
  /** The token of this replica's last leadership, for the logs and /status. */
  readonly lastToken: number | null;
  /** When the last successful acquire or renew was sent. */
  readonly lastRenewOkAt: number | null;
  /** No takeover before this time: set after a resignation, doubling while they repeat. */
  readonly backoffUntil: number;
  readonly resignStreak: number;
  /**
   * Breaks in the connection so far, and how many there had been when a lease write of ours last
   * reached (or may have reached) Redis: a record of our session is one we wrote on the current
   * connection only while the two are equal.
   */
  readonly breaks: number;
  readonly breaksAtLastWrite: number;
  /** Whether any record (or announcement of one) reached this process: then it is not fresh. */
  readonly sawRecord: boolean;
  /** What the last acquire found, so a repeated anomaly is logged once, not every tick. */
  readonly lastAcquireKind: AcquireResult['kind'] | null;
}

export interface Seen {
  readonly state: 'held' | 'free' | 'barrier' | 'handoff' | 'foreign' | 'anomaly';
  /** The holder of a held record; the successor named by a handoff. */
  readonly holder: string | null;
  readonly token: number | null;
}

/** A leadership this replica holds. */
export interface HeldLease {
  readonly lease: Lease;
  /** Local monotonic time until which we may call ourselves ACTIVE. */
  readonly validUntil: number;
  readonly acquiredAt: number;
}

/** The last time the deadline was judged, on both clocks: a suspend shows as a difference. */
export interface ClockCheck {
  readonly mono: number;
  readonly wall: number;
}

export type ElectionState =
  /** Before the first answer from the store. */
  | { readonly kind: 'unknown'; readonly memory: Memory }
  | { readonly kind: 'standby'; readonly memory: Memory }
  | { readonly kind: 'leading'; readonly memory: Memory; readonly held: HeldLease; readonly lastClockCheck: ClockCheck | null };

/**
 * The moment a decision is made: both clocks, and whether an earlier leadership is still being
 * left (its leader work has not ended, or a switchover is handing its lease over). Meanwhile the
 * replica takes nothing and frees nothing.
 */
export interface Now {
  readonly mono: number;
  readonly wall: number;
  readonly workEnding: boolean;
  readonly handingOver: boolean;
}

/** What the elector is configured with; the same for every decision. */
export interface ElectionRules {
  readonly instanceId: string;
  /** For the logs only. */
  readonly lockKey: string;
  readonly timing: LeaseTiming;
}

/** What the loop must do besides keeping the new state. Performed in order. */
export type Effect =
  | { readonly kind: 'role'; readonly from: Role; readonly to: Role; readonly reason: string; readonly token: number | null; readonly ended: HeldLease | null }
  /** Fire the leader work's signal: it no longer leads. */
  | { readonly kind: 'abort_work'; readonly token: number; readonly why: string }
  | { readonly kind: 'start_work'; readonly held: HeldLease }
  /** (Re)arm the step-down timer for the held lease's deadline; none when not leading. */
  | { readonly kind: 'arm_deadline'; readonly at: number | null }
  | { readonly kind: 'release'; readonly lease: Lease }
  /** Release `lease` once the leader work has ended (a resignation). */
  | { readonly kind: 'release_after_work'; readonly held: HeldLease }
  | { readonly kind: 'abandon' }
  | { readonly kind: 'barrier'; readonly reason: BarrierReason }
  | { readonly kind: 'log'; readonly level: 'debug' | 'info' | 'warn' | 'error'; readonly fields: Record<string, unknown>; readonly msg: string };

/** When to run the election next, for decisions taken outside a tick. */
export type Next =
  /** Leave the schedule as it is. */
  | { readonly kind: 'keep' }
  /** Run a tick now (coalesced with one in flight). */
  | { readonly kind: 'kick'; readonly why: string }
  /** Run a tick in `ms`, unless one is already due sooner or running. */
  | { readonly kind: 'not_later_than'; readonly ms: number }
  /** Run the next tick in `ms`, whatever was planned. */
  | { readonly kind: 'in'; readonly ms: number };

export interface Step {
  readonly state: ElectionState;
  readonly effects: readonly Effect[];
}

/** A tick's decision: the next tick comes `delayMs` later. */
export interface TickStep extends Step {
  readonly delayMs: number;
}

export interface EventStep extends Step {
  readonly next: Next;
}

/** An acquire as it was sent: the reply is judged against what was asked and when. */
export interface AcquireSent {
  readonly request: AcquireRequest;
  readonly sentAt: number;
  /** The wall clock at the send: a host suspend while the request was out shows against sentAt. */
  readonly sentWall: number;
  readonly breaksAtSend: number;
}

export interface RenewSent {
  readonly held: HeldLease;
  readonly sentAt: number;
  readonly breaksAtSend: number;
}

/** The longest back-off after repeated resignations, as a multiple of the renew interval. */
const MAX_BACKOFF_FACTOR = 8;

export function initialState(rules: ElectionRules): ElectionState {
  return {
    kind: 'unknown',
    memory: {
      floor: 0,
      maxTtlSeen: rules.timing.ttlMs,
      watch: EMPTY_WATCH,
      seen: null,
      lastToken: null,
      lastRenewOkAt: null,
      backoffUntil: 0,
      resignStreak: 0,
      breaks: 0,
      breaksAtLastWrite: -1,
      sawRecord: false,
      lastAcquireKind: null,
    },
  };
}

export function roleOf(state: ElectionState): Role {
  return state.kind === 'leading' ? 'active' : state.kind;
}

/** Whether `token` is the leadership this state holds. Tokens never repeat, so they name a leadership. */
export function isLeading(state: ElectionState, token: number): boolean {
  return state.kind === 'leading' && state.held.lease.token === token;
}

/**
 * Builds one decision: the state and effects accumulate in order, as the rules are applied one
 * after another. Local to a single decision; the state handed in is never changed.
 */
class Decision {
  private state: ElectionState;
  private readonly effects: Effect[] = [];

  constructor(
    private readonly rules: ElectionRules,
    state: ElectionState,
  ) {
    this.state = state;
  }

  get current(): ElectionState {
    return this.state;
  }

  get memory(): Memory {
    return this.state.memory;
  }

  remember(change: Partial<Memory>): void {
    this.state = { ...this.state, memory: { ...this.state.memory, ...change } };
  }

  emit(effect: Effect): void {
    this.effects.push(effect);
  }

  log(level: 'debug' | 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
    this.emit({ kind: 'log', level, fields, msg });
  }

  learnToken(token: number): void {
    if (Number.isSafeInteger(token) && token > this.memory.floor) this.remember({ floor: token });
  }

  learnTtl(ttlMs: number): void {
    if (ttlMs > this.memory.maxTtlSeen) this.remember({ maxTtlSeen: Math.min(MAX_TTL_MS, ttlMs) });
  }

  saw(ver: string, at: number, waitMs: number): void {
    this.remember({ watch: sawVersion(this.memory.watch, ver, at, waitMs) });
  }

  /** A lease write sent when `breaksAtSend` breaks had happened reached Redis, or may have (a timeout). */
  wroteSince(breaksAtSend: number): void {
    if (this.memory.breaks === breaksAtSend) this.remember({ breaksAtLastWrite: breaksAtSend });
  }

  /** How long a version must stand still: the longest TTL anyone may be using, clamped. */
  waitFor(ttlMs: number, maxTtlMs: number): number {
    return Math.min(MAX_TTL_MS, Math.max(ttlMs, maxTtlMs, this.memory.maxTtlSeen, this.rules.timing.ttlMs));
  }

  /** Never wait past the moment the watched version may be taken over; look again at least every renew interval. */
  standbyDelay(now: Now): number {
    const { renewIntervalMs } = this.rules.timing;
    // Not taking anything while leader work ends or a handover runs: the end of the work kicks.
    if (leaving(now)) return renewIntervalMs;
    const at = Math.max(eligibleAt(this.memory.watch) ?? now.mono + renewIntervalMs, this.memory.backoffUntil);
    return Math.min(renewIntervalMs, Math.max(0, at - now.mono) + 1);
  }

  /** Changes the role (if it changes) keeping what the replica knows; one log line per change. */
  setRole(to: 'standby', reason: string): void {
    const from = roleOf(this.state);
    if (this.state.kind === 'leading') throw new Error('setRole(standby) while leading: step down instead');
    this.state = { kind: to, memory: this.memory };
    if (from !== to) this.emit({ kind: 'role', from, to, reason, token: this.memory.lastToken, ended: null });
  }

  /** `since`: when the lease's validity started counting, on both clocks (the acquire's send). */
  lead(held: HeldLease, reason: string, since: ClockCheck): void {
    const from = roleOf(this.state);
    this.state = { kind: 'leading', memory: this.memory, held, lastClockCheck: since };
    this.emit({ kind: 'arm_deadline', at: held.validUntil });
    this.emit({ kind: 'role', from, to: 'active', reason, token: held.lease.token, ended: null });
    this.emit({ kind: 'start_work', held });
  }

  /** A renewal moved the held lease's deadline. */
  extend(lease: Lease, validUntil: number): void {
    const s = this.state;
    if (s.kind !== 'leading') throw new Error('extend() while not leading: a renewal is judged only for the leadership held');
    this.state = { ...s, held: { ...s.held, lease, validUntil } };
    this.emit({ kind: 'arm_deadline', at: validUntil });
  }

  /** Stops leading at once: the work's signal fires, the role becomes STANDBY. */
  stepDown(reason: string, why = `no longer ACTIVE: ${reason}`): HeldLease | null {
    const s = this.state;
    if (s.kind !== 'leading') return null;
    this.state = { kind: 'standby', memory: s.memory };
    this.emit({ kind: 'arm_deadline', at: null });
    this.emit({ kind: 'abort_work', token: s.held.lease.token, why });
    this.emit({ kind: 'role', from: 'active', to: 'standby', reason, token: s.held.lease.token, ended: s.held });
    return s.held;
  }

  /**
   * Judges the held lease's deadline on both clocks. A host suspend stops the monotonic clock but
   * not the wall clock: the deadline would come too late by the length of the suspend. More wall
   * time than monotonic time beyond the safety margin means a suspend (or a wall-clock step
   * forward, which costs only a needless step-down).
   */
  judgeDeadline(mono: number, wall: number): void {
    const s = this.state;
    if (s.kind !== 'leading') return;
    const last = s.lastClockCheck;
    this.state = { ...s, lastClockCheck: { mono, wall } };
    if (last && wall - last.wall - (mono - last.mono) > this.rules.timing.safetyMarginMs) {
      this.stepDown(`the host was suspended (the wall clock moved ${Math.round(wall - last.wall - (mono - last.mono))} ms more than the monotonic clock)`);
      return;
    }
    if (mono >= s.held.validUntil) this.stepDown('lease deadline passed without a successful renewal');
  }

  /**
   * A reply naming a version we saw replaced is usually a late reading (it left Redis before an
   * announcement that overtook it) and is ignored. But when the request was sent after we saw its
   * successor, Redis has gone back to it (old data written back without a break in the
   * connection): watch everything afresh, or a standby would wait for the newer version forever,
   * retrying every millisecond.
   */
  noticeRollback(ver: string, sentAt: number): void {
    const current = this.memory.watch.current;
    if (!current || current.ver === ver || !wasReplaced(this.memory.watch, ver) || sentAt <= current.firstSeenAt) return;
    this.log('warn', { ver, newer_ver: current.ver }, 'the lease record went back to a version that had been replaced; waiting a full TTL on it');
    this.remember({ watch: EMPTY_WATCH });
  }

  done(): Step {
    return { state: this.state, effects: this.effects };
  }
}

function leaving(now: Now): boolean {
  return now.workEnding || now.handingOver;
}

/** Judges the deadline now: what anyone asking for the role (/readyz, isLeader(), a tick) must do first. */
export function judgeDeadline(rules: ElectionRules, state: ElectionState, now: Now): Step {
  const d = new Decision(rules, state);
  d.judgeDeadline(now.mono, now.wall);
  return d.done();
}

/**
 * What to ask the store for on a standby's tick. One leader work at a time: while an earlier run
 * is still ending (or a switchover hands its lease over), only look.
 */
export function planAcquire(rules: ElectionRules, state: ElectionState, now: Now): AcquireSent {
  const m = state.memory;
  const mayLead = now.mono >= m.backoffUntil && !leaving(now);
  const d = new Decision(rules, state);
  return {
    request: {
      expectedVer: mayLead ? eligibleVer(m.watch, now.mono) : null,
      floor: m.floor,
      barrierMs: d.waitFor(0, 0),
      fresh: mayLead && m.breaks === 0 && !m.sawRecord && m.floor === 0,
    },
    sentAt: now.mono,
    sentWall: now.wall,
    breaksAtSend: m.breaks,
  };
}

export function planRenew(state: Extract<ElectionState, { kind: 'leading' }>, now: Now): RenewSent {
  return { held: state.held, sentAt: now.mono, breaksAtSend: state.memory.breaks };
}

/** The acquire got no answer (`timedOut`: it may still have run in Redis). */
export function acquireFailed(rules: ElectionRules, state: ElectionState, sent: AcquireSent, timedOut: boolean): TickStep {
  const d = new Decision(rules, state);
  // The acquire may have run in Redis after we stopped waiting, granting a lease nobody uses: on
  // a slow link that would keep every replica out. Hand back whatever we got. A look (nothing
  // expected, not fresh) cannot have taken anything, and may be all we sent while our own lease
  // must stay held (leader work still ending, a handover under way).
  if (timedOut && (sent.request.expectedVer !== null || sent.request.fresh === true)) {
    d.wroteSince(sent.breaksAtSend);
    d.emit({ kind: 'abandon' });
  }
  d.setRole('standby', 'lock store unavailable');
  return { ...d.done(), delayMs: rules.timing.renewIntervalMs };
}

export function acquireAnswered(rules: ElectionRules, state: ElectionState, sent: AcquireSent, result: AcquireResult, now: Now): TickStep {
  const d = new Decision(rules, state);
  const { timing, instanceId } = rules;
  const { sentAt } = sent;
  const receivedAt = now.mono;
  const firstTimeSeen = d.memory.lastAcquireKind !== result.kind;
  d.remember({ lastAcquireKind: result.kind });
  if (result.kind !== 'acquired') d.remember({ sawRecord: true });
  const tick = (delayMs: number): TickStep => ({ ...d.done(), delayMs });
  switch (result.kind) {
    case 'acquired': {
      d.wroteSince(sent.breaksAtSend);
      const validUntil = sentAt + timing.leaseValidityMs;
      d.learnToken(result.lease.token);
      // A host suspend while the request was out stops the monotonic clock, not the wall clock.
      const suspendedMs = now.wall - sent.sentWall - (receivedAt - sentAt);
      if (receivedAt >= validUntil || suspendedMs > timing.safetyMarginMs) {
        // The answer came back after the lease it granted would already be over: hand it back.
        d.emit({ kind: 'release', lease: result.lease });
        d.setRole(
          'standby',
          receivedAt >= validUntil ? 'acquire answered too late to use' : `acquire answered after a host suspend (${Math.round(suspendedMs)} ms)`,
        );
        return tick(0);
      }
      d.remember({ seen: null, lastToken: result.lease.token, lastRenewOkAt: sentAt });
      d.saw(result.lease.ver, sentAt, 0);
      d.lead({ lease: result.lease, validUntil, acquiredAt: sentAt }, `acquired the lock with fencing token ${result.lease.token}`, {
        mono: sentAt,
        wall: sent.sentWall,
      });
      return tick(Math.max(0, sentAt + timing.renewIntervalMs - receivedAt));
    }
    case 'observed': {
      const r = result.record;
      const floorBefore = d.memory.floor;
      d.learnToken(Math.max(r.token, result.newest));
      d.learnTtl(Math.max(r.ttlMs, r.maxTtlMs));
      d.remember({ seen: { state: r.state, holder: r.state === 'held' || r.state === 'handoff' ? r.instanceId : null, token: r.token } });
      if (r.state === 'held' && r.ours && r.token >= floorBefore && d.memory.breaksAtLastWrite === d.memory.breaks && !leaving(now)) {
        // Our own leadership that this process does not hold (a renew or acquire whose reply
        // timed out ran after all): free it, so nobody waits for a lease nobody uses. Only when
        // it is our newest token and we wrote on this connection: otherwise it may be an old
        // record of ours brought back by a restore while someone else leads, and freeing it
        // would let the standbys take it at once. Never while our leader work is still ending
        // (the lease stays held until it has) or while a switchover hands it to a successor.
        d.emit({ kind: 'abandon' });
      }
      // A free record (or one handed to us) needs no wait only when it cannot be an older state
      // come back: we watched the record change to it, with no break in the connection since
      // (which resets the watch). A handoff to someone else is waited out like a held lease.
      d.noticeRollback(r.ver, sentAt);
      const previous = d.memory.watch.current;
      const forUs = r.state === 'free' || (r.state === 'handoff' && r.instanceId === instanceId);
      const freshlyFreed = forUs && previous !== null && previous.ver !== r.ver;
      d.saw(r.ver, receivedAt, freshlyFreed ? 0 : d.waitFor(r.ttlMs, r.maxTtlMs));
      // Free for us right now: take it with the next call instead of reporting STANDBY in between.
      if (eligibleVer(d.memory.watch, receivedAt) === r.ver && receivedAt >= d.memory.backoffUntil && !leaving(now)) return tick(0);
      const reason = now.workEnding
        ? 'waiting for the previous leader work to end'
        : r.state === 'held'
          ? `lock held by ${r.instanceId}`
          : r.state === 'handoff'
            ? `lock handed over to ${r.instanceId}`
            : r.state === 'barrier'
              ? 'waiting out the lock barrier'
              : 'lock released; waiting to be sure nobody still leads';
      d.setRole('standby', reason);
      return tick(d.standbyDelay(now));
    }
    case 'barrier': {
      d.learnToken(result.newest);
      d.learnTtl(result.ms);
      d.remember({ seen: { state: 'barrier', holder: null, token: result.newest } });
      d.noticeRollback(result.ver, sentAt);
      d.saw(result.ver, receivedAt, d.waitFor(result.ms, result.ms));
      d.emit({ kind: 'barrier', reason: result.reason });
      d.log('warn', { reason: result.reason, barrier_ms: result.ms, floor: d.memory.floor }, barrierMessage(result.reason));
      d.setRole('standby', 'waiting out the lock barrier');
      return tick(d.standbyDelay(now));
    }
    case 'foreign': {
      d.learnToken(result.newest);
      d.remember({ seen: { state: 'foreign', holder: null, token: null } });
      d.noticeRollback(result.ver, sentAt);
      d.saw(result.ver, receivedAt, d.waitFor(0, 0));
      if (firstTimeSeen)
        d.log(
          'error',
          { detail: result.detail, lock_key: rules.lockKey },
          'the lock key holds something that is not a GRINDER lease record; it is replaced once it has stood still for the longest TTL',
        );
      d.setRole('standby', 'lock key holds something else');
      return tick(d.standbyDelay(now));
    }
    case 'anomaly':
      d.remember({ seen: { state: 'anomaly', holder: null, token: null } });
      if (firstTimeSeen)
        d.log(
          'error',
          { reason: result.reason, detail: result.detail, lock_key: rules.lockKey },
          'the lock key cannot be used; nobody leads until an operator fixes it',
        );
      d.setRole('standby', 'lock key holds something else');
      return tick(timing.renewIntervalMs);
  }
}

/** The renewal got no answer (`timedOut`: it may still have run in Redis). The lease may still be ours. */
export function renewFailed(rules: ElectionRules, state: ElectionState, sent: RenewSent, timedOut: boolean, now: Now): TickStep {
  const d = new Decision(rules, state);
  if (timedOut) d.wroteSince(sent.breaksAtSend);
  // Keep the lease until the deadline and try again soon.
  d.judgeDeadline(now.mono, now.wall);
  return { ...d.done(), delayMs: d.current.kind === 'leading' ? rules.timing.renewRetryMs : rules.timing.renewIntervalMs };
}

export function renewAnswered(rules: ElectionRules, state: ElectionState, sent: RenewSent, result: RenewResult, now: Now): TickStep {
  const d = new Decision(rules, state);
  const { timing } = rules;
  const { sentAt, held } = sent;
  // Stepped down while waiting (deadline or resignation): the reply changes nothing.
  if (!isLeading(state, held.lease.token)) return { ...d.done(), delayMs: 0 };
  switch (result.kind) {
    case 'renewed': {
      d.wroteSince(sent.breaksAtSend);
      if (now.mono >= held.validUntil) {
        // Too late to extend a deadline that has passed: step down. The version this renewal
        // wrote is ours, so the next acquire may replace it with a new leadership at once.
        d.saw(result.lease.ver, sentAt, 0);
        d.judgeDeadline(now.mono, now.wall);
        return { ...d.done(), delayMs: 0 };
      }
      d.remember({ lastRenewOkAt: sentAt });
      d.saw(result.lease.ver, sentAt, 0);
      if (sentAt - held.acquiredAt >= timing.ttlMs) d.remember({ resignStreak: 0 });
      d.extend(result.lease, sentAt + timing.leaseValidityMs);
      // A host suspend while the renewal was out: step down now, not at the next question.
      d.judgeDeadline(now.mono, now.wall);
      if (d.current.kind !== 'leading') return { ...d.done(), delayMs: 0 };
      return { ...d.done(), delayMs: Math.max(0, sentAt + timing.renewIntervalMs - now.mono) };
    }
    case 'lost':
      if (result.holder) {
        d.learnToken(result.holder.token);
        d.remember({ seen: { state: 'held', holder: result.holder.instanceId, token: result.holder.token } });
      }
      d.stepDown(result.holder ? `lock taken over by ${result.holder.instanceId}` : `lock record is ${result.found}, not our lease`);
      return { ...d.done(), delayMs: 0 };
  }
}

export function announced(rules: ElectionRules, state: ElectionState, a: Announcement, now: Now): EventStep {
  const d = new Decision(rules, state);
  d.remember({ sawRecord: true });
  d.learnToken(a.token);
  d.learnTtl(a.ttlMs);
  if (state.kind === 'leading') return { ...d.done(), next: { kind: 'keep' } };
  if (a.event === 'released' || (a.event === 'handoff' && a.instanceId === rules.instanceId)) {
    // Its holder stopped leading before it wrote this version: no wait.
    d.saw(a.ver, now.mono, 0);
    d.remember({ seen: { state: a.event === 'released' ? 'free' : 'handoff', holder: a.event === 'released' ? null : a.instanceId, token: a.token } });
    return { ...d.done(), next: { kind: 'kick', why: a.event === 'released' ? 'a holder released the lease' : 'the lease was handed over to us' } };
  }
  d.saw(a.ver, now.mono, d.waitFor(a.ttlMs, a.event === 'barrier' ? a.ttlMs : 0));
  d.remember({
    seen: {
      state: a.event === 'barrier' ? 'barrier' : a.event === 'handoff' ? 'handoff' : 'held',
      holder: a.event === 'barrier' ? null : a.instanceId,
      token: a.token,
    },
  });
  // Never later than already planned: a later look would delay the first attempt after a start or
  // a takeover right at the new version's eligibility.
  return { ...d.done(), next: { kind: 'not_later_than', ms: d.standbyDelay(now) } };
}

/**
 * Across a break Redis may have restarted with older data (a restore, a lost AOF tail, a promoted
 * replica), even one that says it keeps every write: a wait started before the break, a version
 * we wrote and a free record seen before it no longer prove anything.
 */
export function disconnected(rules: ElectionRules, state: ElectionState): Step {
  const d = new Decision(rules, state);
  d.remember({ breaks: d.memory.breaks + 1, watch: EMPTY_WATCH });
  return d.done();
}

/**
 * Steps down at once and backs off before leading again, doubling while resignations repeat, so a
 * replica that keeps failing at its work does not keep taking the lease from one that could do it.
 * The lease is handed back only once the work has ended: until then the lease (no longer renewed)
 * keeps everyone else out.
 */
export function resigned(rules: ElectionRules, state: ElectionState, token: number, reason: string, now: Now): EventStep {
  const d = new Decision(rules, state);
  if (!isLeading(state, token)) return { ...d.done(), next: { kind: 'keep' } };
  const held = d.stepDown(`resigned: ${reason}`);
  const streak = d.memory.resignStreak + 1;
  const factor = Math.min(MAX_BACKOFF_FACTOR, 2 ** (streak - 1));
  const backoffUntil = now.mono + Math.min(rules.timing.ttlMs, rules.timing.renewIntervalMs * factor);
  d.remember({ resignStreak: streak, backoffUntil });
  if (held) d.emit({ kind: 'release_after_work', held });
  return { ...d.done(), next: { kind: 'in', ms: Math.max(0, backoffUntil - now.mono) } };
}

/** Steps down without resigning: a switchover (`why` fires the work's signal) or a shutdown. */
export function steppedDown(rules: ElectionRules, state: ElectionState, reason: string, why?: string): Step & { held: HeldLease | null } {
  const d = new Decision(rules, state);
  const held = d.stepDown(reason, why);
  return { ...d.done(), held };
}

/** Our own handoff was written: the successor may take it; we wait it out like any lease of someone else. */
export function handedOver(rules: ElectionRules, state: ElectionState, ver: string, successor: string, token: number, now: Now): Step {
  const d = new Decision(rules, state);
  d.saw(ver, now.mono, d.waitFor(0, 0));
  d.remember({ seen: { state: 'handoff', holder: successor, token } });
  return d.done();
}

/** The parts of /status the election decides; the loop adds what the store and the timers know. */
export function electionView(
  state: ElectionState,
  instanceId: string,
  now: number,
): Pick<HaSnapshot, 'role' | 'holder' | 'fencingToken' | 'leaseRemainingMs' | 'lastRenewAgeMs' | 'leaseState'> {
  const m = state.memory;
  let holder: string | null = null;
  let leaseRemainingMs: number | null = null;
  let fencingToken = m.lastToken;
  if (state.kind === 'leading') {
    holder = instanceId;
    fencingToken = state.held.lease.token;
    leaseRemainingMs = Math.max(0, Math.round(state.held.validUntil - now));
  } else if (m.seen) {
    holder = m.seen.state === 'held' ? m.seen.holder : null;
    fencingToken = m.seen.token ?? fencingToken;
    const at = eligibleAt(m.watch);
    if (at !== null) leaseRemainingMs = Math.max(0, Math.round(at - now));
  }
  return {
    role: roleOf(state),
    holder,
    fencingToken,
    leaseRemainingMs,
    lastRenewAgeMs: m.lastRenewOkAt === null ? null : Math.round(now - m.lastRenewOkAt),
    leaseState: state.kind === 'leading' ? 'held' : (m.seen?.state ?? null),
  };
}

/** The remaining back-off at `now`. */
export function backoffLeft(state: ElectionState, now: number): number {
  return Math.max(0, state.memory.backoffUntil - now);
}

function barrierMessage(reason: BarrierReason): string {
  switch (reason) {
    case 'data_loss':
      return 'the lease record and token counter are missing (a new Redis, or Redis lost its data): nobody leads until the barrier has stood for the longest TTL';
    case 'record_missing':
      return 'the lease record was removed (DEL, eviction or FLUSHALL?): nobody leads until the barrier has stood for the longest TTL';
    case 'rollback':
      return 'Redis knows no token as new as one this replica has seen (data rolled back?): counter raised, nobody leads until the barrier has stood for the longest TTL';
  }
}
