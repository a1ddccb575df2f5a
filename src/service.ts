import { randomBytes } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { Logger } from 'pino';
import { CONFIG_EXIT_CODE, redactRedisUrl, redisEndpoint, type Config } from './config';
import { systemClock } from './ha/clock';
import { LeaderElector, errMessage } from './ha/elector';
import { RedisLeaseLock } from './ha/redis-lock';
import type { HaStatusSource, Role } from './ha/role';
import { SoloLeader } from './ha/solo';
import { leaseTiming } from './ha/timing';
import { createHttpApp, isReady } from './http/app';
import { createLogger } from './log';
import { redisProblemReporter } from './redis-diagnose';
import { InstrumentedLeaseLock } from './telemetry/instrumented-lock';
import { FencedStream } from './live/fence';
import { createInstruments, observeState } from './telemetry/metrics';
import type { OtelConfig } from './telemetry/otel-config';
import { redisAttributes, traceRedisCommands } from './telemetry/redis-spans';
import { startTelemetry } from './telemetry/sdk';
import { VERSION } from './version';
import type { LeaderWorkDeps, LeaderWorkPlugin } from './work';

export interface RunningService {
  readonly port: number;
  readonly ha: HaStatusSource;
  readonly log: Logger;
  /** Graceful stop: leader work, lease, HTTP server, telemetry, in that order. */
  stop(): Promise<void>;
}

export interface ServiceOptions {
  env: Record<string, string | undefined>;
  /** The validated OTEL_* settings (main reads them with the rest of the configuration). */
  otel?: OtelConfig;
  /** The work to run while ACTIVE (main wires the built-in live loop through this). */
  leaderWork?: (deps: LeaderWorkDeps) => LeaderWorkPlugin | null;
}

/** Wires config, telemetry, election and HTTP together and starts them. */
export async function startService(config: Config, opts: ServiceOptions): Promise<RunningService> {
  const startedAt = systemClock.now();
  const uptimeSeconds = (): number => (systemClock.now() - startedAt) / 1000;
  const log = createLogger(config.logLevel, config.instanceId);
  const telemetry = startTelemetry({ instanceId: config.instanceId, cluster: config.cluster, version: VERSION, env: opts.env, otel: opts.otel, log });
  const instruments = createInstruments(telemetry.meter, {
    lockTtlMs: config.haEnabled ? config.lockTtlMs : null,
    live: config.haEnabled && config.live.enabled,
  });
  const onTransition = (from: Role, to: Role): void => instruments.transition(from, to);

  let ha: LeaderElector | SoloLeader;
  let redisLock: RedisLeaseLock | null = null;
  if (config.haEnabled) {
    const timing = leaseTiming(config.lockTtlMs, config.renewIntervalMs);
    let lastFacts = '';
    let lastMasterChanges = 0;
    const target = redisEndpoint(config.redis);
    const problems = redisProblemReporter({
      target,
      shownUrl: redactRedisUrl(config.redisUrl),
      log,
      // For good: a refused SELECT must not be retried (the lock's own reconnects would).
      stopClient: () => void redisLock?.close(),
    });
    redisLock = new RedisLeaseLock({
      target: config.redis,
      minReplicas: config.minReplicas,
      lockKey: config.lockKey,
      instanceId: config.instanceId,
      session: randomBytes(8).toString('hex'),
      ttlMs: config.lockTtlMs,
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
      onReplication: (acked) => instruments.replicaAck(acked),
      onConnectionError: (err) => problems.onError(err),
    });
    redisLock.subscribe((event) => {
      if (event.kind === 'connected') problems.onReady();
    });
    if (telemetry.tracesExported) traceRedisCommands(redisLock.client, telemetry.tracer, target);
    // An operation starts at least every renew interval and ends within a command timeout; one
    // more command timeout is slack for a late timer on a busy host.
    const answerWithinMs = timing.renewIntervalMs + 2 * timing.commandTimeoutMs;
    const lock = new InstrumentedLeaseLock(
      redisLock,
      telemetry.tracer,
      instruments,
      config.instanceId,
      log,
      () => systemClock.now(),
      answerWithinMs,
      redisAttributes(target),
    );
    // Every election line (role changes, lease failures) names the lock key, so the runbook's
    // `docker logs … | grep -i lock` shows them all.
    const electionLog = log.child({ lock_key: config.lockKey });
    ha = new LeaderElector({
      instanceId: config.instanceId,
      timing,
      lock,
      clock: systemClock,
      log: electionLog,
      onTransition,
      onBarrier: (reason) => instruments.barrier(reason),
    });
  } else {
    ha = new SoloLeader(config.instanceId, log, onTransition);
  }

  const leaseLock = redisLock;
  const deps: LeaderWorkDeps = {
    fencedStream: leaseLock ? (streamKey, maxLen) => new FencedStream(leaseLock.client, { streamKey, keys: leaseLock.keys, maxLen }) : null,
    log,
    instruments,
  };
  const plugin = opts.leaderWork?.(deps) ?? null;
  if (plugin) ha.onLeading(plugin.work);

  observeState(telemetry.meter, {
    ha,
    instanceId: config.instanceId,
    version: VERSION,
    lockTtlMs: config.haEnabled ? config.lockTtlMs : null,
    renewIntervalMs: config.haEnabled ? config.renewIntervalMs : null,
    uptimeSeconds,
    ready: () => isReady(ha),
    ...(plugin?.stats ? { live: plugin.stats } : {}),
    ...(leaseLock ? { masterChanges: () => leaseLock.facts().masterChanges } : {}),
  });

  const app = createHttpApp({
    ha,
    info: {
      instanceId: config.instanceId,
      version: VERSION,
      lockKey: config.haEnabled ? config.lockKey : null,
      lockTtlMs: config.haEnabled ? config.lockTtlMs : null,
      renewIntervalMs: config.haEnabled ? config.renewIntervalMs : null,
    },
    metricsText: () => telemetry.metricsText(),
    uptimeSeconds,
    onError: (err) => log.error({ err: errMessage(err) }, 'HTTP handler failed'),
  });

  const server = await listen(app.callback(), config.httpHost, config.metricsPort);
  log.info(
    {
      port: config.metricsPort,
      host: config.httpHost,
      ha_enabled: config.haEnabled,
      redis: config.haEnabled ? redactRedisUrl(config.redisUrl) : undefined,
      lock_key: config.haEnabled ? config.lockKey : undefined,
      lock_ttl_ms: config.lockTtlMs,
      renew_interval_ms: config.renewIntervalMs,
      traces_exported: telemetry.tracesExported,
      version: VERSION,
    },
    'grinder started',
  );
  ha.start();

  let stopping: Promise<void> | null = null;
  return {
    port: config.metricsPort,
    ha,
    log,
    stop: () => {
      stopping ??= (async () => {
        await ha.stop();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await telemetry.shutdown();
        log.info('grinder stopped');
      })();
      return stopping;
    },
  };
}

/** A start-up failure with the exit code it deserves: 2 when only a configuration change can fix it. */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

function listen(handler: RequestListener, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(handler);
    server.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      switch (err.code) {
        case 'EADDRINUSE':
          // Often a previous instance still stopping: a restart may well succeed, so not exit 2.
          reject(
            new StartupError(
              `port ${port} on ${host} is already in use; stop what listens there or choose another port with GRINDER_METRICS_PORT or --metrics-port`,
              1,
            ),
          );
          break;
        case 'EACCES':
          reject(
            new StartupError(
              `not allowed to listen on port ${port}; ports below 1024 need privileges, choose another with GRINDER_METRICS_PORT`,
              CONFIG_EXIT_CODE,
            ),
          );
          break;
        case 'EADDRNOTAVAIL':
          reject(
            new StartupError(
              `cannot listen on ${where}: GRINDER_HTTP_HOST=${host} is not an address of this machine; use 0.0.0.0 (every IPv4 interface), :: (every interface) or one of this machine's addresses`,
              CONFIG_EXIT_CODE,
            ),
          );
          break;
        case 'ENOTFOUND':
        case 'EAI_FAIL':
        case 'EAI_NONAME':
        case 'EAI_AGAIN':
          reject(
            new StartupError(
              `cannot listen on ${where}: GRINDER_HTTP_HOST=${host} does not resolve to an address; use an IP address such as 0.0.0.0 or 127.0.0.1`,
              CONFIG_EXIT_CODE,
            ),
          );
          break;
        default:
          reject(new StartupError(`cannot listen on ${where}: ${err.message}; check GRINDER_HTTP_HOST and GRINDER_METRICS_PORT`, 1));
      }
    });
    server.listen(port, host, () => resolve(server));
  });
}
