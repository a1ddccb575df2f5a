import { errMessage } from '../error-text';
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { HaStatusSource } from '../ha/role';
import type { LeaseClient } from '../redis/connection';
import type { LeaseKeys } from '../redis/keys';
import type { Registration } from './registration';

/** How long a graceful stop waits for Redis to confirm the leave (normally a millisecond or two). */
export const LEAVE_WITHIN_MS = 250;

export interface MembershipOptions {
  /** The lease connection (RedisLeaseLock.client): heartbeats go where the lease is, on its clock. */
  client: LeaseClient;
  keys: LeaseKeys;
  ha: HaStatusSource;
  instanceId: string;
  /** GRINDER_ADVERTISE_URL. */
  httpUrl: string;
  version: string;
  startedAt: Date;
  ttlMs: number;
  renewIntervalMs: number;
  log: Logger;
}

/**
 * This replica's entry in the cluster view (`grinder list`, GET /cluster): a registration in Redis
 * refreshed every renew interval, right after every role change and right after the connection
 * comes back, that expires one TTL after the last heartbeat. A graceful stop takes it out at once.
 *
 * Nothing here can affect the election: heartbeats are separate commands on the lease connection,
 * their failures are only logged (once at warn per outage, then at debug), and the elector never
 * waits for them.
 */
export class Membership {
  private readonly opts: MembershipOptions;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private failing = false;
  private readonly onReady = (): void => this.beatSoon();

  constructor(opts: MembershipOptions) {
    this.opts = opts;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    // After a break the registration may have expired: register again as soon as Redis is back.
    this.opts.client.on('ready', this.onReady);
    if (this.opts.client.status === 'ready') this.beatSoon();
    this.timer = setInterval(() => void this.beat(), this.opts.renewIntervalMs);
    this.timer.unref();
  }

  /** Called on every role change, so the view shows the new role at once rather than a renew interval later. */
  roleChanged(): void {
    this.beatSoon();
  }

  /**
   * No more heartbeats; takes the registration out. Never rejects, and gives up after `withinMs`:
   * a stop must stay inside the shutdown watchdog's budget, and a member that cannot leave (Redis
   * slow or down) drops out of the view anyway when its registration expires, one TTL later.
   */
  async stop(withinMs = LEAVE_WITHIN_MS): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.opts.client.off('ready', this.onReady);
    const { log } = this.opts;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), withinMs);
    });
    try {
      const outcome = await Promise.race([this.leave(), gaveUp]);
      if (outcome === 'late')
        log.info({ within_ms: withinMs }, 'Redis did not confirm leaving the cluster view in time; this replica drops out of it within one TTL');
      else log.info('left the cluster view');
    } catch (err) {
      log.info({ err: errMessage(err) }, 'could not leave the cluster view; this replica drops out of it when its registration expires, within one TTL');
    } finally {
      clearTimeout(timer);
    }
  }

  private async leave(): Promise<'left'> {
    // Redis runs one connection's commands in order, but a script sent as EVALSHA is re-sent as
    // EVAL after a NOSCRIPT: waiting for the heartbeat in flight keeps it from landing after the leave.
    await this.inFlight;
    const { client, keys, instanceId } = this.opts;
    await context.with(ROOT_CONTEXT, () => client.grinderLeave(keys.members, keys.member(instanceId), keys.veterans, instanceId));
    return 'left';
  }

  /** Out of the caller's stack: a role change is reported from inside the elector's tick. */
  private beatSoon(): void {
    setImmediate(() => void this.beat());
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = this.send().finally(() => {
      this.inFlight = null;
      if (this.again) {
        this.again = false;
        void this.beat();
      }
    });
    await this.inFlight;
  }

  private async send(): Promise<void> {
    const { client, keys, instanceId, log, ha } = this.opts;
    const s = ha.snapshot();
    const registration: Registration = {
      instance_id: instanceId,
      role: s.role,
      fencing_token: s.fencingToken,
      lease_remaining_ms: s.leaseRemainingMs,
      http_url: this.opts.httpUrl,
      version: this.opts.version,
      started_at: this.opts.startedAt.toISOString(),
      healthy: s.loopHealthy && s.redisConnected === true,
      ttl_ms: this.opts.ttlMs,
      renew_interval_ms: this.opts.renewIntervalMs,
    };
    try {
      // A root context: a heartbeat sent from a role change is no part of the lease operation's span.
      await context.with(ROOT_CONTEXT, () =>
        client.grinderHeartbeat(
          keys.members,
          keys.member(instanceId),
          keys.veterans,
          instanceId,
          this.opts.ttlMs,
          JSON.stringify(registration),
          // Seen a leadership: a fresh replica must not believe a `grinder init` declaration beside it.
          registration.fencing_token !== null && registration.fencing_token > 0 ? '1' : '',
        ),
      );
      if (this.failing) {
        this.failing = false;
        log.info('registered in the cluster view again');
      }
    } catch (err) {
      if (this.failing) {
        log.debug({ err: errMessage(err) }, 'cluster view heartbeat failed again');
        return;
      }
      this.failing = true;
      log.warn(
        { err: errMessage(err) },
        'could not register in the cluster view (grinder list, /cluster): this replica drops out of it one TTL after its last heartbeat; the election is not affected; retrying every renew interval',
      );
    }
  }
}
