import { createConnection } from 'node:net';
import type { Logger } from 'pino';
import type { RedisEndpoint } from './config';

/**
 * Asks host:port for a plain-text PING. True when a Redis answers in plain RESP (+PONG, or an
 * error such as -NOAUTH): the server is not speaking TLS there.
 */
export function answersPlainRedis(target: Pick<RedisEndpoint, 'host' | 'port'>, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: target.host, port: target.port });
    const done = (plain: boolean): void => {
      sock.destroy();
      resolve(plain);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d: Buffer) => done(d[0] === 0x2b /* + */ || d[0] === 0x2d /* - */));
  });
}

/** A TLS connection that failed in a way a plain-text server causes: no handshake answer, or garbage. */
export function looksLikeTlsFailure(err: Error & { code?: string }): boolean {
  return err.code === 'ETIMEDOUT' || /^ERR_SSL_|^EPROTO$/.test(err.code ?? '') || /SSL|TLS|wrong version number|packet length/i.test(err.message);
}

/** ioredis reports a refused SELECT on (re)connect as an error event and then goes on with DB 0. */
export function isSelectRefusal(err: Error): boolean {
  return /DB index is out of range|invalid DB index/i.test(err.message);
}

export interface RedisProblemReporter {
  onError(err: Error & { code?: string }): void;
  onReady(): void;
}

/**
 * Turns ioredis' connection events into log lines that say what is wrong and what to do:
 * - each distinct problem once (ioredis reports every reconnect attempt);
 * - a refused SELECT (the server has fewer databases than the URL names) stops the client for
 *   good, because ioredis would otherwise go on with database 0 and this replica would lead there
 *   beside replicas that use the right database;
 * - a TLS connection (rediss://) that times out or gets garbage is checked against a plain PING,
 *   so that "the server does not speak TLS" is reported as such rather than as a time-out.
 */
export function redisProblemReporter(opts: {
  target: RedisEndpoint;
  /** The URL as it may be shown (redactRedisUrl). */
  shownUrl: string;
  log: Logger;
  stopClient: () => void;
}): RedisProblemReporter {
  const { target, shownUrl: redis, log } = opts;
  const where = `${target.host}:${target.port}`;
  let last = '';
  let refused = false;
  let tlsChecked = false;
  return {
    onError(err) {
      if (refused) return;
      if (isSelectRefusal(err)) {
        refused = true;
        opts.stopClient();
        log.error(
          { err: err.message, redis, db: target.db },
          `Redis refused SELECT ${target.db}: the server has fewer databases than GRINDER_REDIS_URL names; this replica will not lead (ioredis would go on with database 0). Use a database the server has (its \`databases\` setting) and restart`,
        );
        return;
      }
      if (err.message === last) return;
      last = err.message;
      if (target.tls && looksLikeTlsFailure(err) && !tlsChecked) {
        tlsChecked = true;
        void answersPlainRedis(target).then((plain) => {
          if (plain) {
            log.error(
              { err: err.message, redis },
              `TLS handshake with ${where} failed: the server speaks plain Redis there, without TLS; use redis:// for it, or point rediss:// at the server's TLS port`,
            );
          } else {
            log.warn(
              { err: err.message, redis },
              `TLS connection to ${where} failed; check that it is the server's TLS port and that its certificate is trusted`,
            );
          }
        });
        return;
      }
      log.warn({ err: err.message, redis }, 'Redis connection problem; the lock cannot be held until it is back');
    },
    onReady() {
      last = '';
      log.info({ redis }, 'Redis connection ready');
    },
  };
}
