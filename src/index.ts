/**
 * The `grinder-ha` package: leader election through a Redis lease, with supervised leader work
 * and fenced writes. Importing it starts nothing (no HTTP server, no telemetry SDK, no signal
 * handlers, no timers): createElector connects to Redis, run() starts electing. The service
 * (`grinder`, dist/main.js) builds its elector through the same code.
 */
import { trace } from '@opentelemetry/api';
import { buildElector } from './library/elector';
import { libraryLogger } from './library/logger';
import { resolveOptions } from './library/options';
import type { Elector, ElectorOptions } from './library/types';
import type { HaInstruments } from './telemetry/metrics';
import { TRACER_NAME } from './telemetry/names';

export { FenceUsageError, InvalidOptionError } from './library/errors';
export type {
  Elector,
  ElectorLogger,
  ElectorOptions,
  Fence,
  FenceAppendOptions,
  FenceAppendResult,
  HaSnapshot,
  LeaderWork,
  LeaderWorkContext,
  Role,
  RoleChange,
} from './library/types';

/** A library user reads roles through the API; metrics are the service's business. */
const NO_INSTRUMENTS: HaInstruments = {
  renewLatency: () => undefined,
  lockFailure: () => undefined,
  transition: () => undefined,
  liveWrite: () => undefined,
  barrier: () => undefined,
  replicaAck: () => undefined,
};

/**
 * Creates an elector for one lock key. Validates every option first (an InvalidOptionError names
 * the option, the value and the rule), then connects to Redis; nothing is elected until run(work).
 * Call stop() to release the lease and close the connections.
 */
export function createElector(options: ElectorOptions): Elector {
  const settings = resolveOptions(options);
  const built = buildElector(settings, {
    log: libraryLogger(settings.logger, settings.instanceId),
    // The API's global tracer: no-op unless the application registered an OpenTelemetry SDK, in
    // which case lease operations become spans in its traces.
    tracer: trace.getTracer(TRACER_NAME),
    instruments: NO_INSTRUMENTS,
    traceCommands: false,
  });
  // Only the public members: the Redis client and the elector's internals stay out of reach.
  return {
    instanceId: built.instanceId,
    lockKey: built.lockKey,
    run: (work) => built.run(work),
    role: () => built.role(),
    status: () => built.status(),
    stop: () => built.stop(),
  };
}
