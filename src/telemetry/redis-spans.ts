import { SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { Redis, type Cluster, type Command } from 'ioredis';
import type { RedisEndpoint } from '../config';
import { DB_SYSTEM_REDIS, SemAttr } from './names';
import { errMessage } from '../error-text';

/** The semantic-convention attributes of anything that talks to this Redis (database client spans). */
export function redisAttributes(target: RedisEndpoint): Attributes {
  return {
    [SemAttr.dbSystemName]: DB_SYSTEM_REDIS,
    [SemAttr.serverAddress]: target.host,
    [SemAttr.serverPort]: target.port,
    [SemAttr.dbNamespace]: String(target.db),
  };
}

/**
 * Makes every command `client` sends inside a span a CLIENT child span of it (EVALSHA, an EVAL
 * after NOSCRIPT, XADD, ...), with the database semantic conventions. Commands sent outside any
 * span (connection set-up, the ready check) stay untraced, as they belong to no operation.
 *
 * Done by wrapping this one client's sendCommand, the method every ioredis command goes through,
 * rather than with @opentelemetry/instrumentation-ioredis: that patches the module when it is
 * first required (so it must be loaded before ioredis, and pulls in require-in-the-middle),
 * emits the old `db.system`/`net.peer.name` attributes unless OTEL_SEMCONV_STABILITY_OPT_IN says
 * otherwise, and pins an @opentelemetry/instrumentation line older than the SDK's.
 * Command arguments are not recorded: they carry lease values, and an AUTH would carry a password.
 */
export function traceRedisCommands(client: Redis | Cluster, tracer: Tracer, target: RedisEndpoint): void {
  // A Cluster client sends through its nodes' clients, created as slots are learned: not wrapped here.
  if (!(client instanceof Redis)) return;
  const base = redisAttributes(target);
  const send = client.sendCommand.bind(client) as (command: Command, ...rest: unknown[]) => unknown;
  client.sendCommand = ((command: Command, ...rest: unknown[]) => {
    if (trace.getActiveSpan() === undefined) return send(command, ...rest);
    const operation = command.name.toUpperCase();
    const span = tracer.startSpan(operation, { kind: SpanKind.CLIENT, attributes: { ...base, [SemAttr.dbOperationName]: operation } });
    command.promise.then(
      () => span.end(),
      (err: unknown) => {
        const message = errMessage(err);
        // Redis error replies start with their code: NOSCRIPT, WRONGTYPE, ERR, ...
        const code = /^([A-Z]+)\s/.exec(message)?.[1];
        span.setAttribute(SemAttr.errorType, code ?? (err instanceof Error ? err.name : 'Error'));
        if (code !== undefined) span.setAttribute(SemAttr.dbResponseStatusCode, code);
        span.setStatus({ code: SpanStatusCode.ERROR, message });
        span.end();
      },
    );
    return send(command, ...rest);
  }) as Redis['sendCommand'];
}
