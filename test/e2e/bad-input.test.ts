// Redis settings that only the server can show to be wrong, against real processes: what the
// replica says, and that it does not lead somewhere it was not meant to.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { e2eKit } from '../support/e2e';
import { sleep, waitFor } from '../../tools/kit/time';

const TTL = 1_000;
const { redis, replica, haEnv } = e2eKit(TTL, 250);

describe('Redis settings the server refuses', () => {
  it('rediss:// against a plain-text Redis is reported as a TLS failure, not as a time-out', async () => {
    const server = await redis();
    const r = await replica(haEnv(`rediss://127.0.0.1:${server.port}/0`, 'tls-to-plain'));
    const line = await waitFor('the TLS diagnosis', () => r.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('TLS handshake with')));
    assert.equal(line.level, 'error');
    assert.equal(
      line.msg,
      `TLS handshake with 127.0.0.1:${server.port} failed: the server speaks plain Redis there, without TLS; use redis:// for it, or point rediss:// at the server's TLS port`,
    );
    assert.equal(
      r.logsWith('Redis connection problem; the lock cannot be held until it is back').length,
      0,
      'the first problem is not reported as a generic one',
    );
    assert.equal(await r.readyRole(), 'standby');
  });

  it('a database the server does not have: a clear error, and the replica never leads on database 0', async () => {
    const server = await redis({ extraArgs: ['--databases', '4'] });
    const r = await replica(haEnv(`redis://127.0.0.1:${server.port}/7`, 'no-such-db'));
    const line = await waitFor('the SELECT refusal', () => r.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('Redis refused SELECT 7')));
    assert.equal(line.level, 'error');
    assert.match(String(line.msg), /will not lead/);
    // Three TTLs: a replica that went on with database 0 would have passed its one-TTL barrier
    // and led there by now.
    await sleep(TTL * 3);
    assert.equal(await r.readyRole(), 'standby');
    assert.equal(r.logsWith('role changed').filter((l) => l.to === 'active').length, 0);
    const client = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
    try {
      await client.connect();
      assert.equal(await client.exists('grinder:leader:lock', '{grinder:leader:lock}:token'), 0, 'nothing was written to database 0');
    } finally {
      client.disconnect();
    }
  });
});
