import pino, { type Logger } from 'pino';
import type { ElectorLogger } from './types';

/**
 * The election logs through pino (child loggers, `(fields, message)` calls). A library user's
 * logger need not be pino: a pino whose every call is forwarded by its logMethod hook, with the
 * child bindings merged into the fields, takes any logger with debug/info/warn/error methods.
 */
export function libraryLogger(user: ElectorLogger | null, instanceId: string): Logger {
  if (user === null) {
    // A library must not write into the application's stdout; warnings (Redis unreachable, an
    // eviction policy that costs barriers, work that outlived the stop grace) still need a reader.
    return pino(
      {
        level: 'warn',
        base: { service: 'grinder-ha', instance_id: instanceId },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      process.stderr,
    );
  }
  const forward = (level: number, fields: object, msg: string | undefined): void => {
    if (level >= 50) user.error(fields, msg);
    else if (level >= 40) user.warn(fields, msg);
    else if (level >= 30) user.info(fields, msg);
    else user.debug(fields, msg);
  };
  const root = pino(
    {
      // Every call reaches the hook; the user's logger applies its own level.
      level: 'debug',
      base: null,
      hooks: {
        logMethod(args, _method, level) {
          const [first, second] = args as unknown[];
          const bindings = this.bindings();
          const message = typeof second === 'string' ? second : undefined;
          try {
            if (typeof first === 'string') forward(level, bindings, first);
            else if (first instanceof Error) forward(level, { ...bindings, err: first }, message);
            else forward(level, { ...bindings, ...(typeof first === 'object' && first !== null ? first : {}) }, message);
          } catch {
            // A logger that throws must not break the election that called it.
          }
        },
      },
    },
    // Never written to: the hook forwards every call instead of passing it on.
    { write: () => undefined },
  );
  return root.child({ instance_id: instanceId });
}
