// GET /cluster: the cluster view as JSON (read from Redis by the replica), 404 with HA disabled,
// 503 when Redis cannot be read, one read shared by concurrent requests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterView } from '../../src/cluster/view';
import { createHttpApp, type HttpDeps } from '../../src/http/app';
import { FakeHa } from '../support/fake-ha';

const JSON_TYPE = 'application/json; charset=utf-8';

const VIEW: ClusterView = {
  lock_key: 'grinder:leader:lock',
  redis_time_ms: 1_800_000_000_000,
  lease: { state: 'held', instance_id: 'a', token: 1_796_663_438_192_503, ttl_ms: 10_000 },
  leader: 'a',
  handoff_to: null,
  members: [],
  unreadable: [],
};

async function serve(cluster: HttpDeps['cluster']): Promise<{ base: string; server: Server }> {
  const app = createHttpApp({
    ha: new FakeHa(),
    info: { instanceId: 'a', version: '1.2.3', lockKey: 'grinder:leader:lock', lockTtlMs: 10_000, renewIntervalMs: 3_000 },
    metricsText: async () => '',
    uptimeSeconds: () => 1,
    cluster,
  });
  const server = createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('GET /cluster', () => {
  let reads = 0;
  let answer: () => Promise<ClusterView> = async () => VIEW;
  let base = '';
  let server: Server;
  let soloBase = '';
  let solo: Server;

  before(async () => {
    ({ base, server } = await serve(() => {
      reads++;
      return answer();
    }));
    ({ base: soloBase, server: solo } = await serve(null));
  });

  after(async () => {
    for (const s of [server, solo]) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  it('answers the view as JSON, read at request time, never cached', async () => {
    answer = async () => VIEW;
    const before = reads;
    const r = await fetch(`${base}/cluster`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), JSON_TYPE);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const body = await r.text();
    assert.deepEqual(JSON.parse(body), VIEW);
    assert.ok(body.includes('"token":1796663438192503'), 'the 16-digit token exactly');
    await fetch(`${base}/cluster/?x=1`);
    assert.equal(reads, before + 2, 'one Redis read per request (trailing slash and query as on the other endpoints)');
  });

  it('shares one Redis read between requests that arrive while it is in flight', async () => {
    let release: (v: ClusterView) => void = () => undefined;
    answer = () => new Promise<ClusterView>((resolve) => (release = resolve));
    const before = reads;
    const pending = [fetch(`${base}/cluster`), fetch(`${base}/cluster`), fetch(`${base}/cluster`)];
    await new Promise((r) => setTimeout(r, 100));
    release(VIEW);
    for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
    assert.equal(reads, before + 1);
    answer = async () => VIEW;
    await fetch(`${base}/cluster`);
    assert.equal(reads, before + 2, 'and reads again once it is done');
  });

  it('answers 503 saying what failed and what to check when Redis cannot be read', async () => {
    answer = async () => {
      throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
    };
    const r = await fetch(`${base}/cluster`);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.deepEqual(await r.json(), {
      error: 'cluster view unavailable',
      detail:
        "could not read the cluster view from Redis: Stream isn't writeable and enableOfflineQueue options is false; see /status (redis_connected) and retry",
    });
  });

  it('with HA disabled answers 404 saying the cluster view needs HA', async () => {
    const r = await fetch(`${soloBase}/cluster`);
    assert.equal(r.status, 404);
    assert.deepEqual(await r.json(), {
      error: 'not found',
      detail: 'the cluster view needs HA (GRINDER_HA_ENABLED=true): with HA disabled this replica is the only one and registers nowhere; see /status',
    });
  });

  it('answers HEAD like GET without a body, and other methods 405 with Allow, without reading Redis', async () => {
    answer = async () => VIEW;
    const head = await fetch(`${base}/cluster`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const before = reads;
    for (const method of ['POST', 'DELETE']) {
      const r = await fetch(`${base}/cluster`, { method });
      assert.equal(r.status, 405);
      assert.equal(r.headers.get('allow'), 'HEAD, GET');
    }
    assert.equal((await fetch(`${soloBase}/cluster`, { method: 'POST' })).status, 405);
    assert.equal(reads, before);
  });
});
