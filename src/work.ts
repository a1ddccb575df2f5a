import type { Logger } from 'pino';
import type { LeaderWork } from './library/types';
import type { HaInstruments, LiveStatsSource } from './telemetry/metrics';

/**
 * Leader work plugged into the service, and what it reports to /metrics. The work is the same
 * LeaderWork a library user hands to run(work): it gets the fence handle in its context, never
 * the Redis client.
 */
export interface LeaderWorkPlugin {
  work: LeaderWork;
  stats?: LiveStatsSource;
}

/** What the service hands a leader-work factory. */
export interface LeaderWorkDeps {
  log: Logger;
  instruments: HaInstruments;
}
