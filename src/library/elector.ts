import { randomBytes } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { redactRedisUrl, redisEndpoint } from '../config';
import { systemClock } from '../ha/clock';
import { LeaderElector } from '../ha/elector';
import { RedisLeaseLock } from '../ha/redis-lock';
import type { HaSnapshot, LeaderContext, Role } from '../ha/role';
import { leaseTiming } from '../ha/timing';
import { fenceFor } from '../live/fence';
import { redisProblemReporter } from '../redis-diagnose';
import { InstrumentedLeaseLock } from '../telemetry/instrumented-lock';
import type { HaInstruments } from '../telemetry/metrics';
import { redisAttributes, traceRedisCommands } from '../telemetry/redis-spans';
import type { ElectorSettings } from './options';
import type { Elector, Fence, LeaderWork, LeaderWorkContext, RoleChange } from './types';

/**
 * The one place an elector is built, for the library's createElector and for the service alike:
 * the Redis lease lock with its diagnostics, the instrumented lock, the LeaderElector, and the
 * run(work) supervisor entry with its fence handle. The service passes its telemetry as hooks;
 * the library passes no-ops, so it starts no SDK and opens no port.
 */
export interface ElectorHooks {
  log: Logger;
  tracer: Tracer;
  instruments: HaInstruments;
  /** Whether every Redis command of a lease operation becomes a child span (only when spans are exported). */
  traceCommands: boolean;
  /** Told about every role change, synchronously (metrics). */
  onTransition?: (from: Role, to: Role) => void;
}

/** The public Elector, plus what the service wires into /status, /metrics and the cluster view. */
export interface BuiltElector extends Elector {
  readonly elector: LeaderElector;
  readonly redisLock: RedisLeaseLock;
  /** Elects without leader work (GRINDER_LIVE_ENABLED=false): the leader holds the lease, nothing runs. */
  start(): void;
}

export function buildElector(settings: ElectorSettings, hooks: ElectorHooks): BuiltElector {
  const { log } = hooks;
  let registered = false;
  let stopping: Promise<void> | null = null;
  const timing = leaseTiming(settings.ttlMs, settings.renewIntervalMs);
  let lastFacts = '';
  let lastMasterChanges = 0;
  const target = redisEndpoint(settings.target);
  const problems = redisProblemReporter({
    target,
    shownUrl: redactRedisUrl(settings.redisUrl),
    log,
    // For good: a refused SELECT must not be retried (the lock's own reconnects would).
    stopClient: () => void redisLock.close(),
  });
  const redisLock: RedisLeaseLock = new RedisLeaseLock({
    target: settings.target,
    minReplicas: settings.minReplicas,
    lockKey: settings.lockKey,
    instanceId: settings.instanceId,
    session: randomBytes(8).toString('hex'),
    ttlMs: settings.ttlMs,
    commandTimeoutMs: timing.commandTimeoutMs,
    onFacts: (facts) => {
      if (facts.masterChanges > lastMasterChanges) {
        lastMasterChanges = facts.masterChanges;
        log.warn(
          { redis_master: facts.master, master_changes: facts.masterChanges },
          'the Redis master changed (failover); standbys wait a full TTL before taking over unless the holder renews its own lease',
        );
      }
      // Said once per distinct finding: every reconnect reads it again.
      const finding = `${facts.maxmemoryPolicy}|${facts.durable}`;
      if (finding === lastFacts) return;
      lastFacts = finding;
      if (facts.maxmemoryPolicy !== null && facts.maxmemoryPolicy !== 'noeviction') {
        log.error(
          { maxmemory_policy: facts.maxmemoryPolicy },
          `Redis evicts keys under memory pressure (maxmemory-policy ${facts.maxmemoryPolicy}): an evicted lease record costs a barrier with no leader; set maxmemory-policy noeviction`,
        );
      }
      if (facts.maxmemoryPolicy === null) log.warn('cannot read Redis maxmemory-policy (CONFIG not allowed); make sure it is noeviction');
      if (facts.durable !== true && facts.mode === 'standalone') {
        log.warn(
          { durable: facts.durable },
          'Redis may lose acknowledged writes in a restart (not appendonly yes + appendfsync always, or unknown): a lost lease record costs a barrier (no leader for one TTL); set appendonly yes and appendfsync always',
        );
      }
    },
    onReplication: (acked) => hooks.instruments.replicaAck(acked),
    // After stop() the connections are closing on purpose: nothing to report.
    onConnectionError: (err) => {
      if (!stopping) problems.onError(err);
    },
  });
  redisLock.subscribe((event) => {
    if (event.kind === 'connected') problems.onReady();
  });
  if (hooks.traceCommands) traceRedisCommands(redisLock.client, hooks.tracer, target);
  // An operation starts at least every renew interval and ends within a command timeout; one
  // more command timeout is slack for a late timer on a busy host.
  const answerWithinMs = timing.renewIntervalMs + 2 * timing.commandTimeoutMs;
  const lock = new InstrumentedLeaseLock(
    redisLock,
    hooks.tracer,
    hooks.instruments,
    settings.instanceId,
    log,
    () => systemClock.now(),
    answerWithinMs,
    redisAttributes(target),
  );
  const onRoleChange = settings.onRoleChange;
  // Every election line (role changes, lease failures) names the lock key, so the runbook's
  // `docker logs … | grep -i lock` shows them all.
  const electionLog = log.child({ lock_key: settings.lockKey });
  const elector = new LeaderElector({
    instanceId: settings.instanceId,
    timing,
    lock,
    clock: systemClock,
    log: electionLog,
    onTransition: (from, to) => {
      hooks.onTransition?.(from, to);
      if (onRoleChange) notifyLater(onRoleChange, { from, to }, log);
    },
    onBarrier: (reason) => hooks.instruments.barrier(reason),
  });

  return {
    instanceId: settings.instanceId,
    lockKey: settings.lockKey,
    elector,
    redisLock,
    run(work: LeaderWork): void {
      const given: unknown = work;
      if (typeof given !== 'function') {
        throw new TypeError(`run(work) needs a function (ctx) => Promise<void> to run while ACTIVE; got ${given === null ? 'null' : typeof given}`);
      }
      if (registered) {
        throw new Error(
          'run() was already called on this elector: one elector supervises one leader work. Start further tasks from inside that work (they share its signal), or create another elector with its own lockKey for a separate leadership',
        );
      }
      if (stopping) throw new Error('run() after stop(): this elector is closed; create a new one with createElector() to elect again');
      registered = true;
      elector.onLeading((ctx) => work(workContext(ctx, fenceFor(redisLock.client, redisLock.keys, ctx.token))));
      elector.start();
    },
    start(): void {
      if (stopping) return;
      elector.start();
    },
    role: (): Role => elector.currentRole(),
    status: (): HaSnapshot => elector.snapshot(),
    stop(): Promise<void> {
      stopping ??= elector.stop(settings.stopGraceMs);
      return stopping;
    },
  };
}

/** The elector's context with the fence handle of this leadership (the service's HA-disabled path uses it too). */
export function workContext(ctx: LeaderContext, fence: Fence): LeaderWorkContext {
  return {
    signal: ctx.signal,
    token: ctx.token,
    instanceId: ctx.instanceId,
    isLeader: () => ctx.isLeader(),
    resign: (reason) => ctx.resign(reason),
    fence,
  };
}

/**
 * Delivered after the elector's own bookkeeping, never inside it: a listener that calls stop() or
 * status(), or throws, must not run in the middle of a role change.
 */
function notifyLater(listener: (change: RoleChange) => void, change: RoleChange, log: Logger): void {
  queueMicrotask(() => {
    try {
      listener(change);
    } catch (err) {
      log.error({ err }, 'the onRoleChange listener threw; the election goes on');
    }
  });
}
