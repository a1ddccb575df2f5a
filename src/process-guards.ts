/**
 * Process-wide guards that must be in place before anything else runs; main.ts imports this
 * module first.
 *
 * - stdout and stderr may lose their reader (a log shipper that died, `| head`). Writing then
 *   fails with EPIPE, which Node reports as an 'error' event that would otherwise crash the
 *   process. A log line that cannot be written is dropped; the lease work goes on, and a stop
 *   still releases the lease and exits 0.
 * - SIGUSR1 would open the Node inspector (a debugger on 127.0.0.1:9229) inside a process that
 *   holds the Redis password. A listener of our own replaces Node's inspector activation.
 * - SIGUSR2 would kill the process without releasing the lease. It means nothing to GRINDER, so
 *   it is ignored too (and logged, like SIGUSR1).
 * - ioredis 5 parses the Redis URL with url.parse(), which Node 24 flags at every start
 *   (DEP0169, a free-text warning on stderr). GRINDER has already validated that URL with the
 *   WHATWG parser (config.ts), so this one warning says nothing to an operator; every other
 *   warning still prints. (ioredis 6 no longer calls url.parse().)
 */

export const IGNORED_SIGNALS = ['SIGUSR1', 'SIGUSR2'] as const;
export type IgnoredSignal = (typeof IGNORED_SIGNALS)[number];

let brokenPipe = false;
let reportIgnored: (signal: IgnoredSignal) => void = () => {};

for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', () => {
    // EPIPE, or any other reason the stream cannot take more: drop what cannot be written.
    brokenPipe = true;
  });
}

const emitWarning = process.emitWarning.bind(process) as (warning: string | Error, ...rest: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const options = rest[0];
  const code = typeof options === 'object' && options !== null ? (options as { code?: unknown }).code : rest[1];
  if (code === 'DEP0169') return;
  emitWarning(warning, ...rest);
}) as typeof process.emitWarning;

for (const signal of IGNORED_SIGNALS) {
  process.on(signal, () => reportIgnored(signal));
}

/** Where ignored signals are reported once a logger exists. */
export function onIgnoredSignal(report: (signal: IgnoredSignal) => void): void {
  reportIgnored = report;
}

/** True once stdout or stderr refused a write. */
export function outputBroken(): boolean {
  return brokenPipe;
}
