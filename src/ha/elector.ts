import type { Logger } from 'pino';
import type { Clock, TimerHandle } from './clock';
import {
  LockUnavailableError,
  MAX_TTL_MS,
  type AcquireResult,
  type Announcement,
  type BarrierReason,
  type Lease,
  type LeaseLock,
  type LockEvent,
  type LockOperation,
  type SwitchoverRequest,
} from './lock';
import type { HaSnapshot, HaStatusSource, LeaderContext, LeaderWork, Role } from './role';
import type { LeaseTiming } from './timing';
import { VersionWatch } from './watch';
import { errMessage } from '../error-text';

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
 *
 * What it does NOT guarantee. A leader's side effects can still land after its lease ended: a
 * request it sent before a pause can arrive later, and code that does not check the signal keeps
 * running. The lease only bounds when a replica *believes* it leads. Work that must never overlap
 * has to be fenced: every leadership gets a token greater than all earlier ones, and the store
 * that receives the work must reject a token lower than one it has seen (see live/fence).
 *
 * Host suspend. On Linux CLOCK_MONOTONIC stands still while the host is suspended, so a suspended
 * holder would see too little time pass. Every time the deadline is judged, the holder compares
 * how far its wall clock and its monotonic clock moved since the last time; more wall time than
 * the safety margin allows means a suspend, and it steps down at once (a wall-clock step forward
 * looks the same and costs one needless step-down). A suspended standby only waits longer.
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

interface HeldLease {
  lease: Lease;
  /** Local monotonic time until which we may call ourselves ACTIVE. */
  validUntil: number;
  acquiredAt: number;
  controller: AbortController;
}

/** What the last look at the record showed, for /status. */
interface Seen {
  state: 'held' | 'free' | 'barrier' | 'handoff' | 'foreign' | 'anomaly';
  /** The holder of a held record; the successor named by a handoff. */
  holder: string | null;
  token: number | null;
}

/** The longest back-off after repeated resignations. */
const MAX_BACKOFF_FACTOR = 8;

export class LeaderElector implements HaStatusSource {
  private readonly opts: ElectorOptions;
  private role: Role = 'unknown';
  private held: HeldLease | null = null;
  private readonly watch = new VersionWatch();
  private seen: Seen | null = null;
  /** The highest fencing token seen anywhere: passed to every acquire as a floor. */
  private floor = 0;
  /** The longest TTL any holder is known to have used, this replica's own included. */
  private maxTtlSeen: number;
  private lastToken: number | null = null;
  private lastRenewOkAt: number | null = null;
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
  /** The last time the deadline was judged, on both clocks: a suspend shows as a difference. */
  private lastClockCheck: { mono: number; wall: number } | null = null;
  /** No takeover before this time: set after a resignation, doubling while they repeat. */
  private backoffUntil = 0;
  private resignStreak = 0;
  /** What the last acquire saw, so repeated identical findings are logged once, not every tick. */
  private lastAcquireKind: string | null = null;
  /**
   * Breaks in the connection so far, and how many there had been when a lease write of ours last
   * reached (or may have reached) Redis: a record of our session is one we wrote on the current
   * connection only while the two are equal.
   */
  private breaks = 0;
  private breaksAtLastWrite = -1;
  /** Whether any record (or announcement of one) reached this process: then it is not fresh. */
  private sawRecord = false;
  /** A planned switchover is handing our lease to a successor: nothing else may free it meanwhile. */
  private handingOver = false;
  /** A lease we resigned that is to be released once the leader work has ended. */
  private releaseAfterWork: HeldLease | null = null;

  constructor(opts: ElectorOptions) {
    this.opts = opts;
    this.maxTtlSeen = opts.timing.ttlMs;
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
    } else if (this.seen) {
      holder = this.seen.state === 'held' ? this.seen.holder : null;
      fencingToken = this.seen.token ?? fencingToken;
      const at = this.watch.eligibleAt();
      if (at !== null) leaseRemainingMs = Math.max(0, Math.round(at - now));
    }
    // Ticks come at most one renew interval plus one Redis timeout apart (config validation keeps
    // that under the TTL), so a loop that has not ticked for a whole TTL is stuck.
    const loopHealthy = this.lastTickAt === null || now - this.lastTickAt <= timing.ttlMs;
    const facts = lock.facts();
    return {
      role,
      haEnabled: true,
      holder,
      fencingToken,
      leaseRemainingMs,
      lastRenewAgeMs: this.lastRenewOkAt === null ? null : Math.round(now - this.lastRenewOkAt),
      redisConnected: lock.isConnected(),
      loopHealthy,
      leaseState: this.held ? 'held' : (this.seen?.state ?? null),
      redisMaxmemoryPolicy: facts.maxmemoryPolicy,
      redisDurable: facts.durable,
      redisMode: facts.mode,
      redisMaster: facts.master,
      replicasAcked: facts.replicasAcked,
    };
  }

  /**
   * Stops electing: aborts the leader work and waits for it, at most `workGraceMs`. If it ended,
   * the lease (if held) is released so the next replica takes over at once; if it still runs, the
   * lease is not released and runs out by itself (one TTL after the last renewal). Then closes the lock.
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
    const ended = await this.workEndedWithin(workGraceMs);
    // A resignation still waiting for its work to end hands its release over to the stop.
    const toRelease = held ?? this.releaseAfterWork;
    this.releaseAfterWork = null;
    if (toRelease && !ended) {
      this.opts.log.warn(
        { token: toRelease.lease.token, grace_ms: workGraceMs },
        'the leader work did not end within the stop grace; the lease is not released and runs out by itself (the next replica takes over one TTL after the last renewal)',
      );
    } else if (toRelease) {
      try {
        const r = await this.opts.lock.release(toRelease.lease);
        this.opts.log.info({ token: toRelease.lease.token, result: r.kind }, 'lease released on shutdown');
      } catch (err) {
        this.opts.log.warn({ err }, 'could not release the lease on shutdown; the next replica takes over when it expires');
      }
    }
    await this.opts.lock.close();
  }

  private onLockEvent(event: LockEvent): void {
    // Stopped: what the store says no longer changes anything, /status included.
    if (this.stopped) return;
    switch (event.kind) {
      case 'connected':
        if (!this.held) this.kick('connection ready');
        return;
      case 'disconnected':
        // Across a break Redis may have restarted with older data (a restore, a lost AOF tail, a
        // promoted replica), even one that says it keeps every write: a wait started before the
        // break, a version we wrote and a free record seen before it no longer prove anything.
        this.breaks += 1;
        this.watch.reset();
        return;
      case 'announcement':
        this.onAnnouncement(event.announcement);
        return;
      case 'switchover':
        this.onSwitchoverRequest(event.request);
    }
  }

  private onAnnouncement(a: Announcement): void {
    this.sawRecord = true;
    this.learnToken(a.token);
    this.learnTtl(a.ttlMs);
    if (this.held) return;
    const now = this.opts.clock.now();
    if (a.event === 'released' || (a.event === 'handoff' && a.instanceId === this.opts.instanceId)) {
      // Its holder stopped leading before it wrote this version: no wait.
      this.watch.saw(a.ver, now, 0);
      this.seen = { state: a.event === 'released' ? 'free' : 'handoff', holder: a.event === 'released' ? null : a.instanceId, token: a.token };
      this.kick(a.event === 'released' ? 'a holder released the lease' : 'the lease was handed over to us');
      return;
    }
    this.watch.saw(a.ver, now, this.waitFor(a.ttlMs, a.event === 'barrier' ? a.ttlMs : 0));
    this.seen = {
      state: a.event === 'barrier' ? 'barrier' : a.event === 'handoff' ? 'handoff' : 'held',
      holder: a.event === 'barrier' ? null : a.instanceId,
      token: a.token,
    };
    // Never later than already planned: a later look would delay the first attempt after a start
    // or a takeover right at the new version's eligibility.
    const delay = this.standbyDelay(now);
    if (!this.ticking && (this.tickDueAt === null || now + delay < this.tickDueAt)) this.schedule(delay);
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
      next = this.held ? await this.renewOnce(this.held) : await this.acquireOnce();
    } catch (err) {
      // A bug, not an outage: keep the loop alive and say so loudly.
      this.opts.log.error({ err }, 'election tick failed unexpectedly');
      next = this.opts.timing.renewIntervalMs;
    }
    if (this.stopped) return;
    if (this.rerunAfterTick && !this.held) next = Math.min(next, this.backoffLeft());
    this.rerunAfterTick = false;
    this.schedule(next);
  }

  /** Returns the delay until the next tick. */
  private async acquireOnce(): Promise<number> {
    const { clock, lock, timing, log } = this.opts;
    const sentAt = clock.now();
    // One leader work at a time: while an earlier run is still ending, only look.
    const mayLead = sentAt >= this.backoffUntil && !this.leavingLeadership();
    const expectedVer = mayLead ? this.watch.eligibleVer(sentAt) : null;
    const fresh = mayLead && this.breaks === 0 && !this.sawRecord && this.floor === 0;
    const breaksAtSend = this.breaks;
    let result: AcquireResult;
    try {
      result = await lock.acquire({ expectedVer, floor: this.floor, barrierMs: this.waitFor(0, 0), fresh });
    } catch (err) {
      this.onUnavailable(err, 'acquire');
      if (err instanceof LockUnavailableError && err.reason === 'timeout') {
        // The acquire may have run in Redis after we stopped waiting, granting a lease nobody
        // uses: on a slow link that would keep every replica out. Hand back whatever we got. A
        // look (nothing expected, not fresh) cannot have taken anything, and may be all we sent
        // while our own lease must stay held (leader work still ending, a handover under way).
        if (expectedVer !== null || fresh) {
          this.wroteSince(breaksAtSend);
          lock.abandon().catch(() => undefined);
        }
      }
      this.setRole('standby', 'lock store unavailable');
      return timing.renewIntervalMs;
    }
    const receivedAt = clock.now();
    if (this.stopped) {
      // Shutting down while the acquire was in flight: do not lead, hand it back.
      if (result.kind === 'acquired') await lock.release(result.lease).catch(() => undefined);
      return 0;
    }
    const firstTimeSeen = this.lastAcquireKind !== result.kind;
    this.lastAcquireKind = result.kind;
    if (result.kind !== 'acquired') this.sawRecord = true;
    switch (result.kind) {
      case 'acquired': {
        this.wroteSince(breaksAtSend);
        const validUntil = sentAt + timing.leaseValidityMs;
        this.learnToken(result.lease.token);
        if (receivedAt >= validUntil) {
          // The answer came back after the lease it granted would already be over: hand it back.
          lock.release(result.lease).catch(() => undefined);
          this.setRole('standby', 'acquire answered too late to use');
          return 0;
        }
        this.seen = null;
        this.lastToken = result.lease.token;
        this.lastRenewOkAt = sentAt;
        this.watch.saw(result.lease.ver, sentAt, 0);
        this.held = { lease: result.lease, validUntil, acquiredAt: sentAt, controller: new AbortController() };
        this.lastClockCheck = null;
        this.armDeadline();
        this.setRole('active', `acquired the lock with fencing token ${result.lease.token}`);
        this.startWork(this.held);
        return Math.max(0, sentAt + timing.renewIntervalMs - clock.now());
      }
      case 'observed': {
        const r = result.record;
        const floorBefore = this.floor;
        this.learnToken(Math.max(r.token, result.newest));
        this.learnTtl(Math.max(r.ttlMs, r.maxTtlMs));
        this.seen = { state: r.state, holder: r.state === 'held' || r.state === 'handoff' ? r.instanceId : null, token: r.token };
        if (r.state === 'held' && r.ours && r.token >= floorBefore && this.breaksAtLastWrite === this.breaks && !this.leavingLeadership()) {
          // Our own leadership that this process does not hold (a renew or acquire whose reply
          // timed out ran after all): free it, so nobody waits for a lease nobody uses. Only when
          // it is our newest token and we wrote on this connection: otherwise it may be an old
          // record of ours brought back by a restore while someone else leads, and freeing it
          // would let the standbys take it at once. Never while our leader work is still ending (the
          // lease stays held until it has) or while a switchover hands it to a successor.
          lock.abandon().catch(() => undefined);
        }
        // A free record (or one handed to us) needs no wait only when it cannot be an older state
        // come back: we watched the record change to it, with no break in the connection since
        // (which resets the watch). A handoff to someone else is waited out like a held lease.
        this.noticeRollback(r.ver, sentAt);
        const previous = this.watch.watched;
        const forUs = r.state === 'free' || (r.state === 'handoff' && r.instanceId === this.opts.instanceId);
        const freshlyFreed = forUs && previous !== null && previous.ver !== r.ver;
        this.watch.saw(r.ver, receivedAt, freshlyFreed ? 0 : this.waitFor(r.ttlMs, r.maxTtlMs));
        // Free for us right now: take it with the next call instead of reporting STANDBY in between.
        if (this.watch.eligibleVer(receivedAt) === r.ver && receivedAt >= this.backoffUntil && !this.leavingLeadership()) return 0;
        const reason =
          this.workRuns.size > 0
            ? 'waiting for the previous leader work to end'
            : r.state === 'held'
              ? `lock held by ${r.instanceId}`
              : r.state === 'handoff'
                ? `lock handed over to ${r.instanceId}`
                : r.state === 'barrier'
                  ? 'waiting out the lock barrier'
                  : 'lock released; waiting to be sure nobody still leads';
        this.setRole('standby', reason);
        return this.standbyDelay(receivedAt);
      }
      case 'barrier': {
        this.learnToken(result.newest);
        this.learnTtl(result.ms);
        this.seen = { state: 'barrier', holder: null, token: result.newest };
        this.noticeRollback(result.ver, sentAt);
        this.watch.saw(result.ver, receivedAt, this.waitFor(result.ms, result.ms));
        this.opts.onBarrier?.(result.reason);
        log.warn({ reason: result.reason, barrier_ms: result.ms, floor: this.floor }, barrierMessage(result.reason));
        this.setRole('standby', 'waiting out the lock barrier');
        return this.standbyDelay(receivedAt);
      }
      case 'foreign': {
        this.learnToken(result.newest);
        this.seen = { state: 'foreign', holder: null, token: null };
        this.noticeRollback(result.ver, sentAt);
        this.watch.saw(result.ver, receivedAt, this.waitFor(0, 0));
        if (firstTimeSeen) {
          log.error(
            { detail: result.detail, lock_key: lock.lockKey },
            'the lock key holds something that is not a GRINDER lease record; it is replaced once it has stood still for the longest TTL',
          );
        }
        this.setRole('standby', 'lock key holds something else');
        return this.standbyDelay(receivedAt);
      }
      case 'anomaly':
        this.seen = { state: 'anomaly', holder: null, token: null };
        if (firstTimeSeen)
          log.error(
            { reason: result.reason, detail: result.detail, lock_key: lock.lockKey },
            'the lock key cannot be used; nobody leads until an operator fixes it',
          );
        this.setRole('standby', 'lock key holds something else');
        return timing.renewIntervalMs;
    }
  }

  private async renewOnce(held: HeldLease): Promise<number> {
    const { clock, lock, timing } = this.opts;
    const sentAt = clock.now();
    const breaksAtSend = this.breaks;
    let result;
    try {
      result = await lock.renew(held.lease);
    } catch (err) {
      this.onUnavailable(err, 'renew');
      if (err instanceof LockUnavailableError && err.reason === 'timeout') this.wroteSince(breaksAtSend);
      // The lease may still be ours: keep it until the deadline and try again soon.
      this.enforceDeadline();
      return this.held ? timing.renewRetryMs : timing.renewIntervalMs;
    }
    if (this.held !== held) return 0; // stepped down while waiting (deadline or resign)
    switch (result.kind) {
      case 'renewed': {
        this.wroteSince(breaksAtSend);
        if (clock.now() >= held.validUntil) {
          // Too late to extend a deadline that has passed: step down. The version this renewal
          // wrote is ours, so the next acquire may replace it with a new leadership at once.
          this.watch.saw(result.lease.ver, sentAt, 0);
          this.enforceDeadline();
          return 0;
        }
        held.lease = result.lease;
        held.validUntil = sentAt + timing.leaseValidityMs;
        this.lastRenewOkAt = sentAt;
        this.watch.saw(result.lease.ver, sentAt, 0);
        if (sentAt - held.acquiredAt >= timing.ttlMs) this.resignStreak = 0;
        this.armDeadline();
        return Math.max(0, sentAt + timing.renewIntervalMs - clock.now());
      }
      case 'lost':
        if (result.holder) {
          this.learnToken(result.holder.token);
          this.seen = { state: 'held', holder: result.holder.instanceId, token: result.holder.token };
        }
        this.stepDown(result.holder ? `lock taken over by ${result.holder.instanceId}` : `lock record is ${result.found}, not our lease`);
        return 0;
    }
  }

  /** A lease write sent when `breaksAtSend` breaks had happened reached Redis, or may have (a timeout). */
  private wroteSince(breaksAtSend: number): void {
    if (this.breaks === breaksAtSend) this.breaksAtLastWrite = breaksAtSend;
  }

  /**
   * A reply naming a version we saw replaced is usually a late reading (it left Redis before an
   * announcement that overtook it) and is ignored. But when the request was sent after we saw its
   * successor, Redis has gone back to it (old data written back without a break in the
   * connection): watch everything afresh, or a standby would wait for the newer version forever,
   * retrying every millisecond.
   */
  private noticeRollback(ver: string, sentAt: number): void {
    const current = this.watch.watched;
    if (!current || current.ver === ver || !this.watch.replaced(ver) || sentAt <= current.firstSeenAt) return;
    this.opts.log.warn({ ver, newer_ver: current.ver }, 'the lease record went back to a version that had been replaced; waiting a full TTL on it');
    this.watch.reset();
  }

  /** How long a version must stand still: the longest TTL anyone may be using, clamped. */
  private waitFor(ttlMs: number, maxTtlMs: number): number {
    return Math.min(MAX_TTL_MS, Math.max(ttlMs, maxTtlMs, this.maxTtlSeen, this.opts.timing.ttlMs));
  }

  /** Never wait past the moment the watched version may be taken over; look again at least every renew interval. */
  private standbyDelay(now: number): number {
    const { renewIntervalMs } = this.opts.timing;
    // Not taking anything while leader work ends or a handover runs: the end of the work kicks.
    if (this.leavingLeadership()) return renewIntervalMs;
    const at = Math.max(this.watch.eligibleAt() ?? now + renewIntervalMs, this.backoffUntil);
    return Math.min(renewIntervalMs, Math.max(0, at - now) + 1);
  }

  private backoffLeft(): number {
    return Math.max(0, this.backoffUntil - this.opts.clock.now());
  }

  private learnToken(token: number): void {
    if (Number.isSafeInteger(token) && token > this.floor) this.floor = token;
  }

  private learnTtl(ttlMs: number): void {
    if (ttlMs > this.maxTtlSeen) this.maxTtlSeen = Math.min(MAX_TTL_MS, ttlMs);
  }

  private onUnavailable(err: unknown, operation: LockOperation): void {
    // The instrumented lock already logged and counted it; here only what the elector does next.
    const reason = err instanceof LockUnavailableError ? err.reason : 'unexpected';
    this.opts.log.debug(
      { operation, reason },
      `lease ${operation} got no answer; ${operation === 'renew' ? 'keeping the lease until its deadline' : 'staying STANDBY'}`,
    );
  }

  private enforceDeadline(): void {
    if (!this.held) return;
    const { clock, timing } = this.opts;
    const mono = clock.now();
    const wall = clock.wallNow();
    const last = this.lastClockCheck;
    this.lastClockCheck = { mono, wall };
    // A host suspend stops the monotonic clock but not the wall clock: the deadline would come too
    // late by the length of the suspend. More wall time than monotonic time beyond the safety
    // margin means a suspend (or a wall-clock step forward, which costs only a needless step-down).
    if (last && wall - last.wall - (mono - last.mono) > timing.safetyMarginMs) {
      this.stepDown(`the host was suspended (the wall clock moved ${Math.round(wall - last.wall - (mono - last.mono))} ms more than the monotonic clock)`);
      return;
    }
    if (mono >= this.held.validUntil) {
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

  /**
   * Supervises one run of the leader work: it gets a signal that fires when this replica stops
   * being ACTIVE. Work that returns or throws while still leading makes the replica resign (with
   * back-off): ACTIVE with nothing running would be a leader that does no work. Only one run at a
   * time: no acquire while a run is still ending (acquireOnce), and the lease is released only
   * after the run has ended (resign, stop, switchover).
   */
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
      resign: (reason: string) => this.resign(held, reason),
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
      if (this.held === held) this.resign(held, ending);
    })();
    this.workRuns.add(run);
    void run.finally(() => {
      this.workRuns.delete(run);
      // The next leadership waited for this run to end; look again now rather than at the next tick.
      if (!this.held && this.workRuns.size === 0) this.kick('the previous leader work ended');
    });
  }

  /** Steps down at once, backs off, and releases the lease once the leader work has ended. */
  private resign(held: HeldLease, reason: string): void {
    if (this.held !== held) return;
    this.stepDown(`resigned: ${reason}`);
    // Back off before leading again, doubling while resignations repeat, so a replica that keeps
    // failing at its work does not keep taking the lease from one that could do it.
    this.resignStreak += 1;
    const factor = Math.min(MAX_BACKOFF_FACTOR, 2 ** (this.resignStreak - 1));
    this.backoffUntil = this.opts.clock.now() + Math.min(this.opts.timing.ttlMs, this.opts.timing.renewIntervalMs * factor);
    this.schedule(this.backoffLeft());
    // Hand the key back so a rightful leader is not kept waiting for our expiry, but only once the
    // work has ended: until then the lease (no longer renewed) keeps everyone else out.
    this.releaseAfterWork = held;
    void this.workEnded().then(() => {
      // Stopping meanwhile: stop() releases it (or not, if the work outlasts its grace).
      if (this.stopped || this.releaseAfterWork !== held) return;
      this.releaseAfterWork = null;
      this.opts.lock.release(held.lease).catch(() => undefined);
    });
  }

  /**
   * A planned switchover (`grinder switchover`): stop leading, wait for the leader work to end,
   * then hand the lease to `successor`, who takes it at once. If the work is still running at the
   * lease deadline, nothing is handed over: the lease runs out and a standby takes it over then.
   */
  async handOver(successor: string): Promise<'handed_over' | 'not_leader' | 'work_still_running' | 'lost'> {
    const held = this.held;
    if (!held || this.handingOver) return 'not_leader';
    if (successor === this.opts.instanceId) return 'not_leader';
    this.handingOver = true;
    try {
      this.stepDown(`switchover to ${successor}`);
      if (!(await this.workEndedWithin(held.validUntil - this.opts.clock.now()))) {
        this.opts.log.warn(
          { successor, token: held.lease.token },
          'switchover: the leader work did not end before the lease deadline; nothing handed over, the lease runs out by itself',
        );
        return 'work_still_running';
      }
      const r = await this.opts.lock.handOver(held.lease, successor);
      if (r.kind !== 'released') return 'lost';
      // Our own handoff: the successor may take it; we wait it out like any lease of someone else.
      this.watch.saw(r.ver, this.opts.clock.now(), this.waitFor(0, 0));
      this.seen = { state: 'handoff', holder: successor, token: held.lease.token };
      this.opts.log.info({ successor, token: held.lease.token }, `handed the lease over to ${successor}`);
      return 'handed_over';
    } catch (err) {
      this.opts.log.warn({ err, successor }, 'switchover: handing the lease over failed; it runs out by itself and a standby takes it over then');
      return 'lost';
    } finally {
      this.handingOver = false;
    }
  }

  private onSwitchoverRequest(request: SwitchoverRequest): void {
    if (request.from !== this.opts.instanceId) return;
    // Meant for the leadership the operator saw: a request published again (a Redis blip) must
    // not end the next one.
    if (!this.held || this.held.lease.token !== request.token) {
      this.opts.log.warn(
        { request_id: request.id, to: request.to, token: request.token },
        'switchover requested for a leadership this replica does not hold (any more); nothing to do',
      );
      return;
    }
    this.opts.log.info({ request_id: request.id, to: request.to }, `switchover requested: handing the lease over to ${request.to}`);
    void this.handOver(request.to);
  }

  /**
   * Still leaving a leadership: its work has not ended yet, or a switchover is handing it over.
   * Meanwhile the replica takes nothing and frees nothing: the lease must stay held until then.
   */
  private leavingLeadership(): boolean {
    return this.workRuns.size > 0 || this.handingOver;
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
