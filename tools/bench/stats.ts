/**
 * The statistics the benchmark reports. Small, pure and unit-tested (test/unit/bench-stats.test.ts)
 * so that a figure in docs/benchmarks.md means exactly what its column header says.
 */

/** A sorted copy; refuses NaN and infinities, which would sort unpredictably. */
function sorted(values: readonly number[], what: string): number[] {
  if (values.length === 0) throw new RangeError(`${what} of no values`);
  for (const v of values) {
    if (!Number.isFinite(v)) throw new RangeError(`${what}: not a finite number: ${v}`);
  }
  return [...values].sort((a, b) => a - b);
}

function medianOfSorted(s: readonly number[]): number {
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function percentileOfSorted(s: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1] as number;
}

/** The middle value; the mean of the two middle values when there is an even number of them. */
export function median(values: readonly number[]): number {
  return medianOfSorted(sorted(values, 'median'));
}

export function max(values: readonly number[]): number {
  const s = sorted(values, 'max');
  return s[s.length - 1] as number;
}

export function min(values: readonly number[]): number {
  return sorted(values, 'min')[0] as number;
}

export function mean(values: readonly number[]): number {
  return sorted(values, 'mean').reduce((a, b) => a + b, 0) / values.length;
}

/**
 * The p-th percentile by the nearest-rank method: the smallest observed value such that at least
 * p % of all values are less than or equal to it. No interpolation, so "p99 = 4.2 ms" means that
 * 99 % of the requests took 4.2 ms or less and that some request really took 4.2 ms.
 */
export function percentile(values: readonly number[], p: number): number {
  return percentileOfSorted(sorted(values, 'percentile'), p);
}

export const p99 = (values: readonly number[]): number => percentile(values, 99);

export interface Summary {
  n: number;
  min: number;
  median: number;
  mean: number;
  p99: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  const s = sorted(values, 'summary');
  return {
    n: s.length,
    min: s[0] as number,
    median: medianOfSorted(s),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    p99: percentileOfSorted(s, 99),
    max: s[s.length - 1] as number,
  };
}

/** Rounds to `digits` decimals for display and JSON (timings are measured to the microsecond). */
export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
