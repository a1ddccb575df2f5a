/*
 * The errors the `grinder-ha` package throws at its caller. Kept apart from the code that throws
 * them so that the declarations of src/index.ts reach no internal module.
 */

/** An option createElector refuses: names the option, the value and the rule. */
export class InvalidOptionError extends Error {
  constructor(
    readonly option: string,
    /** The value as it may be shown (a Redis URL without its password). */
    readonly value: string,
    readonly rule: string,
  ) {
    super(`createElector: invalid option ${option}=${value}: ${rule}`);
    this.name = 'InvalidOptionError';
  }
}

/** A fenced write that cannot be sent as asked (a bad key, field or cap): a mistake in the caller, not an outage. */
export class FenceUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FenceUsageError';
  }
}
