// The cluster view's Redis side, on a redis-server of the test's own: the heartbeat, leave and
// cluster-view scripts, and Membership (heartbeats, role changes, outages, leaving) with a fake
// elector on a real lease connection.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pino from 'pino';
import { Membership } from '../../src/cluster/membership';
import { parseRegistration } from '../../src/cluster/registration';
import { readCluster } from '../../src/cluster/view';
import { defineCommands } from '../../src/redis/commands';
import { createLeaseClient, type LeaseClient } from '../../src/redis/connection';
import { leaseKeys, type LeaseKeys } from '../../src/redis/keys';
import { parseRedisTarget } from '../../src/redis/target';
import { FakeHa } from '../support/fake-ha';
import { RedisServer } from '../../tools/kit/redis';
import { sleep, waitFor } from '../../tools/kit/time';

const TTL = 1_000;
const RENEW = 250;
let server: RedisServer;
let raw: Redis;
const clients: LeaseClient[] = [];

before(async () => {
  server = await RedisServer.start();
  raw = leaseClient();
  await waitFor('the test connection', () => (raw.status === 'ready' ? true : undefined));
});

after(async () => {
  for (const c of clients) c.disconnect();
  await server.cleanup();
});

function leaseClient(): Redis {
  const c = createLeaseClient(parseRedisTarget(server.url), 500);
  c.on('error', () => undefined);
  defineCommands(c);
  clients.push(c);
  return c as Redis;
}

function freshKeys(): LeaseKeys {
  return leaseKeys(`t:${randomBytes(6).toString('hex')}:lock`);
}

/** A pino logger whose lines the test reads back. */
function capturingLog(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

const WARN = 40;

function membership(client: LeaseClient, keys: LeaseKeys, ha: FakeHa, id: string, log: pino.Logger): Membership {
  return new Membership({
    client,
    keys,
    ha,
    instanceId: id,
    httpUrl: `http://${id}:9090`,
    version: '9.9.9',
    startedAt: new Date('2026-01-01T00:00:00Z'),
    ttlMs: TTL,
    renewIntervalMs: RENEW,
    log,
  });
}

describe('heartbeat-3.lua', () => {
  it("writes the registration with heartbeat_ms from Redis' clock, expiring one TTL later, and indexes it by that expiry", async () => {
    const keys = freshKeys();
    // ioredis types TIME as numbers; Redis sends two decimal strings.
    const [sec = 0, micro = 0] = (await raw.time()).map(Number);
    const before = sec * 1000 + Math.floor(micro / 1000);
    const reply = await raw.grinderHeartbeat(
      keys.members,
      keys.member('m1'),
      keys.veterans,
      'm1',
      60_000,
      '{"instance_id":"m1","fencing_token":1796663438192503}',
      '',
    );
    const now = Number(reply[1]);
    assert.equal(reply[0], 1);
    assert.ok(now >= before && now < before + 1_000, `${now} is Redis' clock (${before})`);
    const stored = (await raw.get(keys.member('m1'))) as string;
    assert.equal(stored, `{"heartbeat_ms":${now},"instance_id":"m1","fencing_token":1796663438192503}`, 'spliced in; the token not rounded');
    const pttl = await raw.pttl(keys.member('m1'));
    assert.ok(pttl > 59_000 && pttl <= 60_000, `PTTL ${pttl}`);
    assert.equal(await raw.zscore(keys.members, 'm1'), String(now + 60_000));
  });

  it('drops index entries whose registration has expired', async () => {
    const keys = freshKeys();
    await raw.zadd(keys.members, '1000', 'long-gone');
    await raw.grinderHeartbeat(keys.members, keys.member('m1'), keys.veterans, 'm1', 60_000, '{"a":1}', '');
    assert.deepEqual(await raw.zrange(keys.members, 0, -1), ['m1']);
  });

  it('refuses a registration that is not a JSON object, saying so', async () => {
    const keys = freshKeys();
    for (const bad of ['', '{}', '[1]', 'x']) {
      await assert.rejects(
        raw.grinderHeartbeat(keys.members, keys.member('m1'), keys.veterans, 'm1', 1_000, bad, ''),
        /the registration must be a non-empty JSON object/,
      );
    }
    assert.equal(await raw.exists(keys.member('m1'), keys.members), 0);
  });
});

describe('the veterans key (members that have seen a token)', () => {
  it('a heartbeat that reports a token enters the member, one that does not takes it out, and so does a leave', async () => {
    const keys = leaseKeys(`t:${randomBytes(6).toString('hex')}:lock`);
    const veterans = async (): Promise<string[]> => (await raw.zrange(keys.veterans, 0, -1)).sort();
    await raw.grinderHeartbeat(keys.members, keys.member('m1'), keys.veterans, 'm1', 60_000, '{"a":1}', '1');
    await raw.grinderHeartbeat(keys.members, keys.member('m2'), keys.veterans, 'm2', 60_000, '{"a":1}', '');
    assert.deepEqual(await veterans(), ['m1']);
    const ttl = await raw.pttl(keys.veterans);
    assert.equal(ttl, -1, 'the set itself never expires: its entries do, by score');
    await raw.grinderHeartbeat(keys.members, keys.member('m2'), keys.veterans, 'm2', 60_000, '{"a":1}', '1');
    assert.deepEqual(await veterans(), ['m1', 'm2']);
    await raw.grinderHeartbeat(keys.members, keys.member('m2'), keys.veterans, 'm2', 60_000, '{"a":1}', '');
    assert.deepEqual(await veterans(), ['m1']);
    await raw.grinderLeave(keys.members, keys.member('m1'), keys.veterans, 'm1');
    assert.deepEqual(await veterans(), []);
  });
});

describe('leave-3.lua', () => {
  it('removes the registration and the index entry at once', async () => {
    const keys = freshKeys();
    await raw.grinderHeartbeat(keys.members, keys.member('m1'), keys.veterans, 'm1', 60_000, '{"a":1}', '');
    await raw.grinderHeartbeat(keys.members, keys.member('m2'), keys.veterans, 'm2', 60_000, '{"a":1}', '');
    assert.deepEqual(await raw.grinderLeave(keys.members, keys.member('m1'), keys.veterans, 'm1'), [1]);
    assert.equal(await raw.exists(keys.member('m1')), 0);
    assert.deepEqual(await raw.zrange(keys.members, 0, -1), ['m2']);
    assert.deepEqual(await raw.grinderLeave(keys.members, keys.member('m1'), keys.veterans, 'm1'), [0], 'a second leave finds nothing');
  });
});

describe('Membership', () => {
  it('registers at start with the elector snapshot, and again right after a role change', async () => {
    const keys = freshKeys();
    const ha = new FakeHa({ role: 'standby', fencingToken: 1_796_663_438_192_503, leaseRemainingMs: 800 });
    const { log } = capturingLog();
    const m = membership(leaseClient(), keys, ha, 'm1', log);
    m.start();
    const first = await waitFor('a registration', async () => parseRegistration(await raw.get(keys.member('m1'))) ?? undefined, 2_000, 5);
    assert.deepEqual(
      { ...first, heartbeat_ms: 0 },
      {
        heartbeat_ms: 0,
        instance_id: 'm1',
        role: 'standby',
        fencing_token: 1_796_663_438_192_503,
        lease_remaining_ms: 800,
        http_url: 'http://m1:9090',
        version: '9.9.9',
        started_at: '2026-01-01T00:00:00.000Z',
        healthy: true,
        ttl_ms: TTL,
        renew_interval_ms: RENEW,
      },
    );
    ha.set({ role: 'active' });
    const t0 = Date.now();
    m.roleChanged();
    const registered = await waitFor(
      'the new role registered',
      async () => {
        const r = parseRegistration(await raw.get(keys.member('m1')));
        return r?.role === 'active' ? r : undefined;
      },
      2_000,
      2,
    );
    // When Redis ran the heartbeat (its clock, this host's), not when this poll saw it.
    const after = registered.heartbeat_ms - t0;
    assert.ok(after < RENEW / 2, `registered ${after} ms after the role change, not at the next interval`);
    ha.set({ loopHealthy: false });
    await waitFor(
      'the next interval heartbeat',
      async () => (parseRegistration(await raw.get(keys.member('m1')))?.healthy === false ? true : undefined),
      2_000,
    );
    await m.stop();
  });

  it('keeps refreshing: the registration outlives several TTLs while heartbeats go on', async () => {
    const keys = freshKeys();
    const { log } = capturingLog();
    const m = membership(leaseClient(), keys, new FakeHa({ role: 'standby' }), 'm1', log);
    m.start();
    await waitFor('a registration', async () => ((await raw.exists(keys.member('m1'))) === 1 ? true : undefined), 2_000);
    for (let i = 0; i < 3; i++) {
      await sleep(TTL);
      assert.equal(await raw.exists(keys.member('m1')), 1, `still registered after ${i + 1} TTL`);
    }
    await m.stop();
  });

  it('leaves at once on stop, sends nothing afterwards, and readCluster no longer lists it', async () => {
    const keys = freshKeys();
    const ha = new FakeHa({ role: 'standby' });
    const { log, lines } = capturingLog();
    const client = leaseClient();
    const m = membership(client, keys, ha, 'm1', log);
    m.start();
    await waitFor('listed', async () => ((await readCluster(raw, keys, keys.record)).members.length === 1 ? true : undefined), 2_000);
    await m.stop();
    assert.equal(await raw.exists(keys.member('m1')), 0);
    assert.deepEqual((await readCluster(raw, keys, keys.record)).members, []);
    assert.ok(lines.some((l) => l.msg === 'left the cluster view'));
    m.roleChanged();
    await sleep(RENEW * 2);
    assert.equal(await raw.exists(keys.member('m1')), 0, 'no heartbeat after stop');
  });

  it('a stop on a closed connection resolves and says the registration expires within one TTL', async () => {
    const keys = freshKeys();
    const { log, lines } = capturingLog();
    const client = leaseClient();
    const m = membership(client, keys, new FakeHa({ role: 'standby' }), 'm1', log);
    m.start();
    await waitFor('a registration', async () => ((await raw.exists(keys.member('m1'))) === 1 ? true : undefined), 2_000);
    client.disconnect();
    await m.stop();
    assert.ok(
      lines.some((l) => l.msg.startsWith('could not leave the cluster view; this replica drops out of it when its registration expires, within one TTL')),
      JSON.stringify(lines),
    );
    await waitFor('expiry', async () => ((await raw.exists(keys.member('m1'))) === 0 ? true : undefined), TTL + 500);
  });

  it('during a Redis outage warns once, then only at debug; registers again as soon as Redis is back', async () => {
    const own = await RedisServer.start();
    try {
      const client = createLeaseClient(parseRedisTarget(own.url), 200);
      client.on('error', () => undefined);
      defineCommands(client);
      clients.push(client);
      await waitFor('connected', () => (client.status === 'ready' ? true : undefined));
      const keys = freshKeys();
      const { log, lines } = capturingLog();
      const m = membership(client, keys, new FakeHa({ role: 'standby' }), 'm1', log);
      m.start();
      const check = new Redis(own.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
      check.on('error', () => undefined);
      clients.push(check);
      await waitFor('registered', async () => ((await check.exists(keys.member('m1'))) === 1 ? true : undefined), 2_000);
      await own.stop();
      await sleep(RENEW * 6);
      const warns = lines.filter((l) => l.level === WARN);
      assert.equal(warns.length, 1, JSON.stringify(lines));
      assert.match(warns[0]?.msg ?? '', /^could not register in the cluster view \(grinder list, \/cluster\): .*the election is not affected/);
      assert.ok(lines.filter((l) => l.msg === 'cluster view heartbeat failed again').length >= 3, 'later failures at debug');
      await own.startProcess();
      const t0 = Date.now();
      await waitFor('registered again', async () => ((await check.exists(keys.member('m1'))) === 1 ? true : undefined), 5_000, 10);
      console.log(`# registered again ${Date.now() - t0} ms after Redis came back`);
      // The line follows the heartbeat's answer, which this look may have overtaken.
      await waitFor(
        '"registered in the cluster view again" logged',
        () => (lines.some((l) => l.msg === 'registered in the cluster view again') ? true : undefined),
        2_000,
        5,
      );
      await own.stop();
      const warnings = (): number => lines.filter((l) => l.level === WARN).length;
      await waitFor('a warning for the second outage', () => (warnings() >= 2 ? true : undefined), 3_000, 10);
      await sleep(RENEW * 3);
      assert.equal(warnings(), 2, 'a second outage warns once more, and only once');
      await m.stop();
    } finally {
      await own.cleanup();
    }
  });
});
