import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { endProcess } from './children';
import { freePort } from './ports';
import { RedisServer, redisPing } from './redis';
import { waitFor } from './time';

/*
 * Redis topologies of our own, on free ports: a Sentinel set-up (master, replica, three
 * Sentinels) and a small Redis Cluster (one master holding every slot, one replica of it). Every
 * process is started and killed by its pid.
 */

export const MASTER_NAME = 'grinder';

/** One redis-sentinel process. */
class SentinelProcess {
  private proc: ChildProcess | undefined;
  readonly dir: string;

  constructor(
    readonly port: number,
    private readonly masterPort: number,
    private readonly onSpawn?: (proc: ChildProcess) => void,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'grinder-sentinel-'));
  }

  async start(): Promise<void> {
    const conf = join(this.dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${this.port}`,
        'bind 127.0.0.1',
        `dir ${this.dir}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${this.masterPort} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 4000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'),
    );
    const proc = spawn('redis-sentinel', [conf], { stdio: ['ignore', 'ignore', 'inherit'] });
    // Reported through the wait below: a throw inside the 'error' event would take the process down.
    let spawnError: Error | undefined;
    proc.on('error', (err) => {
      spawnError = err;
    });
    this.proc = proc;
    this.onSpawn?.(proc);
    await waitFor(
      `redis-sentinel on ${this.port}`,
      async () => {
        if (spawnError) throw new Error(`could not start redis-sentinel (apt-get install redis-sentinel): ${spawnError.message}`);
        return (await redisPing(this.port)) ? true : undefined;
      },
      10_000,
    );
  }

  async stop(): Promise<void> {
    if (this.proc) await endProcess(this.proc, 'SIGKILL');
    this.proc = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class SentinelSetup {
  readonly sentinels: SentinelProcess[] = [];

  private constructor(
    readonly master: RedisServer,
    readonly replica: RedisServer,
  ) {}

  /**
   * A master, one replica of it and three Sentinels. `replicaOfPort` lets the caller put a proxy
   * between the replica and the master (to hold the replication link back); `onSpawn` is told
   * of every process started (the chaos harness kills them all if it dies).
   */
  static async start(opts: { replicaOfPort?: (masterPort: number) => Promise<number>; onSpawn?: (proc: ChildProcess) => void } = {}): Promise<SentinelSetup> {
    const master = await RedisServer.start({ persistent: true, ...(opts.onSpawn ? { onSpawn: opts.onSpawn } : {}) });
    const upstream = opts.replicaOfPort ? await opts.replicaOfPort(master.port) : master.port;
    const replica = await RedisServer.start({
      persistent: true,
      ...(opts.onSpawn ? { onSpawn: opts.onSpawn } : {}),
      extraArgs: ['--replicaof', '127.0.0.1', String(upstream), '--replica-announce-ip', '127.0.0.1', '--repl-timeout', '60'],
    });
    const s = new SentinelSetup(master, replica);
    try {
      const probe = new Redis(replica.url);
      await waitFor('the replica in sync', async () => ((await probe.info('replication')).includes('master_link_status:up') ? true : undefined), 15_000);
      probe.disconnect();
      for (let i = 0; i < 3; i++) {
        const sentinel = new SentinelProcess(await freePort(), master.port, opts.onSpawn);
        s.sentinels.push(sentinel);
        await sentinel.start();
      }
      const ask = new Redis(s.sentinels[0]?.port ?? 0);
      await waitFor(
        'the Sentinels to know the replica and each other',
        async () => {
          const info = (await ask.call('SENTINEL', 'MASTER', MASTER_NAME)) as string[];
          const field = (name: string): number => Number(info[info.indexOf(name) + 1]);
          return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2 ? true : undefined;
        },
        20_000,
        100,
      );
      ask.disconnect();
    } catch (err) {
      await s.cleanup();
      throw err;
    }
    return s;
  }

  get url(): string {
    return `redis+sentinel://${this.sentinels.map((x) => `127.0.0.1:${x.port}`).join(',')}/${MASTER_NAME}/0`;
  }

  /** Which of the two data nodes the Sentinels name as master right now. */
  async masterPort(): Promise<number> {
    const ask = new Redis(this.sentinels[0]?.port ?? 0);
    try {
      const [, port] = (await ask.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
      return Number(port);
    } finally {
      ask.disconnect();
    }
  }

  /** A client that follows the master, for the caller's own reads. */
  client(): Redis {
    return new Redis({
      sentinels: this.sentinels.map((x) => ({ host: '127.0.0.1', port: x.port })),
      name: MASTER_NAME,
      retryStrategy: () => 100,
      sentinelRetryStrategy: () => 100,
      maxRetriesPerRequest: 2,
    });
  }

  async cleanup(): Promise<void> {
    for (const x of this.sentinels) await x.cleanup();
    await this.replica.cleanup();
    await this.master.cleanup();
  }
}

/** One master holding all 16384 slots and one replica of it: a Redis Cluster small enough for CI. */
export class SmallCluster {
  private constructor(
    readonly master: RedisServer,
    readonly replica: RedisServer,
  ) {}

  static async start(): Promise<SmallCluster> {
    const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000'];
    const master = await RedisServer.start({ extraArgs: args });
    const replica = await RedisServer.start({ extraArgs: args });
    const c = new SmallCluster(master, replica);
    const m = new Redis(master.port);
    const r = new Redis(replica.port);
    try {
      await m.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      await m.call('CLUSTER', 'MEET', '127.0.0.1', String(replica.port));
      const masterId = String(await m.call('CLUSTER', 'MYID'));
      await waitFor(
        'the replica to meet the master',
        async () => (String(await r.call('CLUSTER', 'NODES')).includes(masterId) ? true : undefined),
        10_000,
        100,
      );
      await r.call('CLUSTER', 'REPLICATE', masterId);
      await waitFor(
        'the cluster to be ok with the replica in sync',
        async () => {
          const ok =
            String(await m.call('CLUSTER', 'INFO')).includes('cluster_state:ok') && String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok');
          const synced = (await r.info('replication')).includes('master_link_status:up');
          return ok && synced ? true : undefined;
        },
        20_000,
        100,
      );
    } catch (err) {
      await c.cleanup();
      throw err;
    } finally {
      m.disconnect();
      r.disconnect();
    }
    return c;
  }

  get url(): string {
    return `redis+cluster://127.0.0.1:${this.master.port},127.0.0.1:${this.replica.port}`;
  }

  async cleanup(): Promise<void> {
    await this.replica.cleanup();
    await this.master.cleanup();
  }
}
