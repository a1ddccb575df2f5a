/**
 * The numbers derived from the lease TTL and renew interval. One function, so the elector, the
 * Redis client and the config validation cannot disagree about them. See SAFETY in election.ts for
 * why each exists.
 */
export interface LeaseTiming {
  ttlMs: number;
  renewIntervalMs: number;
  /** Subtracted from the TTL when the holder computes its own deadline. */
  safetyMarginMs: number;
  /** How long after the start of a successful acquire/renew the holder still calls itself ACTIVE. */
  leaseValidityMs: number;
  /** Upper bound on any single Redis call. */
  commandTimeoutMs: number;
  /** Delay before retrying a renewal that failed without losing the lease (timeout, connection). */
  renewRetryMs: number;
}

export function leaseTiming(ttlMs: number, renewIntervalMs: number): LeaseTiming {
  // 1% of the TTL covers clock-rate drift between this host and Redis (NTP slews at most 0.05%);
  // the fixed 25 ms covers the event loop firing the step-down timer late on a busy machine.
  const safetyMarginMs = Math.ceil(ttlMs * 0.01) + 25;
  const commandTimeoutMs = Math.max(50, Math.min(2_000, Math.floor(ttlMs / 5)));
  return {
    ttlMs,
    renewIntervalMs,
    safetyMarginMs,
    leaseValidityMs: ttlMs - safetyMarginMs,
    commandTimeoutMs,
    renewRetryMs: Math.max(20, Math.floor(renewIntervalMs / 4)),
  };
}
