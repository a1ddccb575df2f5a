import type { Logger } from 'pino';
import type { HaSnapshot, HaStatusSource, LeaderContext, LeaderWork, Role } from './role';

/**
 * HA disabled: this replica is the only one, so it is ACTIVE from the start and needs no Redis.
 * Leader work still runs through the same API, with token 0 (there is no lock to fence against).
 */
export class SoloLeader implements HaStatusSource {
  private readonly controller = new AbortController();
  private work: LeaderWork | null = null;
  private run: Promise<void> | null = null;

  constructor(
    private readonly instanceId: string,
    private readonly log: Logger,
    private readonly onTransition?: (from: Role, to: Role) => void,
  ) {}

  onLeading(work: LeaderWork): void {
    this.work = work;
  }

  start(): void {
    this.log.info({ from: 'unknown', to: 'active', reason: 'HA disabled: the only replica', token: 0 }, 'role changed');
    this.onTransition?.('unknown', 'active');
    const work = this.work;
    if (!work) return;
    const ctx: LeaderContext = {
      signal: this.controller.signal,
      token: 0,
      instanceId: this.instanceId,
      isLeader: () => !this.controller.signal.aborted,
      resign: (reason) => this.log.warn({ reason }, 'leader work asked to resign, but HA is disabled: nobody else could lead'),
    };
    this.run = Promise.resolve()
      .then(() => work(ctx))
      .catch((err: unknown) => this.log.error({ err }, 'leader work failed'));
  }

  currentRole(): Role {
    return this.controller.signal.aborted ? 'standby' : 'active';
  }

  snapshot(): HaSnapshot {
    return {
      role: this.currentRole(),
      haEnabled: false,
      holder: this.instanceId,
      fencingToken: null,
      leaseRemainingMs: null,
      lastRenewAgeMs: null,
      redisConnected: null,
      loopHealthy: true,
      leaseState: null,
      redisMaxmemoryPolicy: null,
      redisDurable: null,
      redisMode: null,
      redisMaster: null,
      replicasAcked: null,
    };
  }

  async stop(): Promise<void> {
    if (this.controller.signal.aborted) return;
    this.controller.abort(new Error('replica is shutting down'));
    this.onTransition?.('active', 'standby');
    await this.run;
  }
}
