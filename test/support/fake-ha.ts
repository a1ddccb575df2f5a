import type { HaSnapshot, HaStatusSource, Role } from '../../src/ha/role';

/**
 * An HaStatusSource whose answers the test sets directly. Every call reads the current fields, so
 * a test can change the role between two requests or two metric collections and see the change.
 */
export class FakeHa implements HaStatusSource {
  state: HaSnapshot;
  /** How many times the role was asked for, to prove it is read at request/collection time. */
  roleReads = 0;
  snapshotReads = 0;

  constructor(initial: Partial<HaSnapshot> = {}) {
    this.state = {
      role: 'unknown',
      haEnabled: true,
      holder: null,
      fencingToken: null,
      leaseRemainingMs: null,
      lastRenewAgeMs: null,
      redisConnected: true,
      loopHealthy: true,
      leaseState: null,
      redisMaxmemoryPolicy: 'noeviction',
      redisDurable: true,
      redisMode: 'standalone',
      redisMaster: '127.0.0.1:6379',
      replicasAcked: null,
      ...initial,
    };
  }

  set(patch: Partial<HaSnapshot>): void {
    this.state = { ...this.state, ...patch };
  }

  setRole(role: Role): void {
    this.set({ role });
  }

  currentRole(): Role {
    this.roleReads++;
    return this.state.role;
  }

  snapshot(): HaSnapshot {
    this.snapshotReads++;
    return { ...this.state };
  }
}
