/**
 * Time as the elector sees it: a monotonic clock and timers. Injected so unit tests drive time by
 * hand (FakeClock in test/support) and never sleep.
 */
export interface Clock {
  /** Milliseconds on a monotonic clock; only differences mean anything. */
  now(): number;
  /**
   * Wall-clock milliseconds. Only compared with now(): on Linux the monotonic clock stands still
   * while the host is suspended and the wall clock does not, which is how a suspend is noticed.
   */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export interface TimerHandle {
  readonly id: unknown;
}

/**
 * CLOCK_MONOTONIC through process.hrtime: never jumps with wall-clock changes, and (on Linux) it is
 * the same clock for every process on the machine, so role-change records written by different
 * replicas on one host can be put on one time line.
 */
export const systemClock: Clock = {
  now: () => Number(process.hrtime.bigint()) / 1e6,
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => ({ id: setTimeout(fn, Math.max(0, ms)) }),
  clearTimeout: (handle) => clearTimeout(handle.id as NodeJS.Timeout),
};
