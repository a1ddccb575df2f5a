import { createServer, type RequestListener, type Server } from 'node:http';
import type { Logger } from 'pino';
import { CONFIG_EXIT_CODE, redactRedisUrl, type Config } from './config';
import { Membership } from './cluster/membership';
import { readCluster } from './cluster/view';
import { systemClock } from './ha/clock';
import type { LeaderElector } from './ha/elector';
import type { HaStatusSource, Role } from './ha/role';
import { SoloLeader } from './ha/solo';
import { createHttpApp, isReady } from './http/app';
import { createLogger } from './log';
import { buildElector, workContext, type BuiltElector } from './library/elector';
import { settingsFromConfig } from './library/options';
import { noFence } from './live/fence';
import { createInstruments, observeState } from './telemetry/metrics';
import type { OtelConfig } from './telemetry/otel-config';
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
  let membership: Membership | null = null;
  const onTransition = (from: Role, to: Role): void => {
    instruments.transition(from, to);
    membership?.roleChanged();
  };

  // The elector a library user gets from createElector, built by the same code, with this
  // process' telemetry; its leader work goes through the same run(work) below.
  const electorApi: BuiltElector | null = config.haEnabled
    ? buildElector(settingsFromConfig(config), {
        log,
        tracer: telemetry.tracer,
        instruments,
        traceCommands: telemetry.tracesExported,
        onTransition,
      })
    : null;
  const ha: LeaderElector | SoloLeader = electorApi ? electorApi.elector : new SoloLeader(config.instanceId, log, onTransition);
  const leaseLock = electorApi?.redisLock ?? null;

  // Cluster view (grinder list, GET /cluster): this replica's registration, heartbeating on the
  // lease connection; with HA disabled there is no cluster and /cluster answers 404.
  membership = leaseLock
    ? new Membership({
        client: leaseLock.client,
        keys: leaseLock.keys,
        ha,
        instanceId: config.instanceId,
        httpUrl: config.advertiseUrl,
        version: VERSION,
        startedAt: new Date(Date.now() - Math.round(process.uptime() * 1000)),
        ttlMs: config.lockTtlMs,
        renewIntervalMs: config.renewIntervalMs,
        log,
      })
    : null;
  const clusterView = leaseLock ? () => readCluster(leaseLock.client, leaseLock.keys, config.lockKey) : null;

  const deps: LeaderWorkDeps = { log, instruments };
  const plugin = opts.leaderWork?.(deps) ?? null;

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
    cluster: clusterView,
    uptimeSeconds,
    onError: (err) => log.error({ err }, 'HTTP handler failed'),
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
  if (electorApi) {
    if (plugin) electorApi.run(plugin.work);
    else electorApi.start();
  } else {
    // HA disabled: the work runs at once, with nothing to fence against.
    if (plugin) ha.onLeading((ctx) => plugin.work(workContext(ctx, noFence())));
    ha.start();
  }
  membership?.start();

  let stopping: Promise<void> | null = null;
  return {
    port: config.metricsPort,
    ha,
    log,
    stop: () => {
      stopping ??= (async () => {
        // Out of the cluster view first, while the lease connection is still open (bounded: a
        // member that cannot leave expires within one TTL).
        await membership?.stop();
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
