import type { Logger } from 'pino';
import type { LeaderWork } from './ha/role';
import type { FencedAppender } from './live/fence';
import type { HaInstruments, LiveStatsSource } from './telemetry/metrics';

/** Leader work plugged into the service, and what it reports to /metrics. */
export interface LeaderWorkPlugin {
  work: LeaderWork;
  stats?: LiveStatsSource;
}

/** What the service hands a leader-work factory. */
export interface LeaderWorkDeps {
  /** Fenced appends to a stream of this lock's Redis; null when HA is off. */
  fencedStream: ((streamKey: string, maxLen: number) => FencedAppender) | null;
  log: Logger;
  instruments: HaInstruments;
}
