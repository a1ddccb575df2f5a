import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHttpApp, PROMETHEUS_CONTENT_TYPE, type StatusInfo } from '../../src/http/app';
import { FakeHa } from '../support/fake-ha';

const JSON_TYPE = 'application/json; charset=utf-8';
const METRICS_TEXT = '# HELP grinder_up 1 while the process is serving.\n# TYPE grinder_up gauge\ngrinder_up 1\n';

interface Answer {
  status: number;
  body: string;
  headers: Headers;
}

describe('HTTP contract', () => {
  const ha = new FakeHa();
  const info: StatusInfo = {
    instanceId: 'grinder-test-0123abcd',
    version: '1.2.3',
    lockKey: 'grinder:leader:lock',
    lockTtlMs: 10_000,
    renewIntervalMs: 3_000,
  };
  let uptime = 0;
  let metricsCalls = 0;
  let metricsFailure: Error | null = null;
  let server: Server;
  let base = '';

  before(async () => {
    const app = createHttpApp({
      ha,
      info,
      metricsText: async () => {
        metricsCalls++;
        if (metricsFailure) throw metricsFailure;
        return METRICS_TEXT;
      },
      uptimeSeconds: () => uptime,
    });
    server = createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  beforeEach(() => {
    ha.state = new FakeHa().state;
    uptime = 12.5;
    metricsFailure = null;
  });

  async function request(path: string, method = 'GET'): Promise<Answer> {
    const r = await fetch(base + path, { method });
    return { status: r.status, body: await r.text(), headers: r.headers };
  }

  describe('GET /readyz', () => {
    it('answers 200 with the exact runbook bytes when ACTIVE', async () => {
      ha.setRole('active');
      const r = await request('/readyz');
      assert.equal(r.status, 200);
      assert.equal(r.body, '{"ready": true, "role": "active"}');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.equal(r.headers.get('content-length'), '33');
      assert.equal(r.headers.get('cache-control'), 'no-store');
    });

    it('answers 503 with the exact bytes when STANDBY', async () => {
      ha.setRole('standby');
      const r = await request('/readyz');
      assert.equal(r.status, 503);
      assert.equal(r.body, '{"ready": false, "role": "standby"}');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
    });

    it('answers 503 with the exact bytes when UNKNOWN', async () => {
      ha.setRole('unknown');
      const r = await request('/readyz');
      assert.equal(r.status, 503);
      assert.equal(r.body, '{"ready": false, "role": "unknown"}');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
    });

    it('asks for the role at request time, every request', async () => {
      const seen: [number, string][] = [];
      for (const role of ['active', 'standby', 'active', 'unknown', 'active'] as const) {
        ha.setRole(role);
        const r = await request('/readyz');
        seen.push([r.status, r.body]);
      }
      assert.deepEqual(seen, [
        [200, '{"ready": true, "role": "active"}'],
        [503, '{"ready": false, "role": "standby"}'],
        [200, '{"ready": true, "role": "active"}'],
        [503, '{"ready": false, "role": "unknown"}'],
        [200, '{"ready": true, "role": "active"}'],
      ]);
    });

    it('uses currentRole() (which judges the deadline), not the snapshot', async () => {
      // A snapshot could be stale; currentRole() is the one that judges the lease deadline now.
      ha.setRole('standby');
      const readsBefore = ha.roleReads;
      const r = await request('/readyz');
      assert.equal(r.status, 503);
      assert.equal(ha.roleReads, readsBefore + 1);
    });
  });

  describe('GET /healthz', () => {
    it('answers 200 with status ok and the uptime while the loop is healthy', async () => {
      ha.setRole('active');
      uptime = 12.5;
      const r = await request('/healthz');
      assert.equal(r.status, 200);
      assert.equal(r.body, '{"status": "ok", "uptime_s": 12.5}');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.deepEqual(JSON.parse(r.body), { status: 'ok', uptime_s: 12.5 });
    });

    it('is healthy on a STANDBY with a live loop', async () => {
      ha.set({ role: 'standby', loopHealthy: true });
      uptime = 3;
      const r = await request('/healthz');
      assert.equal(r.status, 200);
      assert.equal(r.body, '{"status": "ok", "uptime_s": 3}');
    });

    it('rounds the uptime to milliseconds', async () => {
      uptime = 1.23456;
      const r = await request('/healthz');
      assert.equal(r.body, '{"status": "ok", "uptime_s": 1.235}');
    });

    it('answers 503 when the election loop is stuck', async () => {
      ha.set({ role: 'active', loopHealthy: false });
      uptime = 42;
      const r = await request('/healthz');
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      const body = JSON.parse(r.body) as Record<string, unknown>;
      assert.equal(body.status, 'stuck');
      assert.equal(body.uptime_s, 42);
      assert.equal(typeof body.error, 'string');
    });

    it('reads loop health at request time', async () => {
      ha.set({ loopHealthy: false });
      assert.equal((await request('/healthz')).status, 503);
      ha.set({ loopHealthy: true });
      assert.equal((await request('/healthz')).status, 200);
    });
  });

  describe('GET /metrics', () => {
    it('serves the metrics text with the Prometheus content type', async () => {
      const callsBefore = metricsCalls;
      const r = await request('/metrics');
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(r.body, METRICS_TEXT);
      assert.equal(metricsCalls, callsBefore + 1, 'collected once per scrape');
    });

    it('answers 500 with a JSON error when collection fails', async () => {
      metricsFailure = new Error('collection broke');
      const r = await request('/metrics');
      assert.equal(r.status, 500);
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.deepEqual(JSON.parse(r.body), { error: 'internal error', detail: 'collection broke' });
    });
  });

  describe('GET /status', () => {
    it('reports the snapshot and the static facts as JSON', async () => {
      ha.set({
        role: 'active',
        haEnabled: true,
        holder: 'grinder-test-0123abcd',
        fencingToken: 17,
        leaseRemainingMs: 8_750,
        lastRenewAgeMs: 1_250,
        redisConnected: true,
        loopHealthy: true,
        leaseState: 'held',
        redisMaxmemoryPolicy: 'volatile-lru',
        redisDurable: false,
        redisMode: 'sentinel',
        redisMaster: '10.0.0.7:6379',
        replicasAcked: true,
      });
      uptime = 99.9996;
      const r = await request('/status');
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.deepEqual(JSON.parse(r.body), {
        instance_id: 'grinder-test-0123abcd',
        role: 'active',
        ha_enabled: true,
        holder: 'grinder-test-0123abcd',
        fencing_token: 17,
        lease_remaining_ms: 8_750,
        last_renew_age_ms: 1_250,
        redis_connected: true,
        lease_state: 'held',
        redis_maxmemory_policy: 'volatile-lru',
        redis_durable: false,
        redis_mode: 'sentinel',
        redis_master: '10.0.0.7:6379',
        replicas_acked: true,
        lock_key: 'grinder:leader:lock',
        lock_ttl_ms: 10_000,
        renew_interval_ms: 3_000,
        loop_healthy: true,
        uptime_s: 100,
        version: '1.2.3',
      });
    });

    it('reports nulls as JSON null for a STANDBY that has seen nothing yet', async () => {
      ha.set({ role: 'standby', holder: null, fencingToken: null, leaseRemainingMs: null, lastRenewAgeMs: null, redisConnected: false });
      const body = JSON.parse((await request('/status')).body) as Record<string, unknown>;
      assert.equal(body.role, 'standby');
      assert.equal(body.holder, null);
      assert.equal(body.fencing_token, null);
      assert.equal(body.lease_remaining_ms, null);
      assert.equal(body.last_renew_age_ms, null);
      assert.equal(body.redis_connected, false);
    });

    it('reads the role at request time', async () => {
      ha.set({ role: 'active', fencingToken: 5 });
      const a = JSON.parse((await request('/status')).body) as Record<string, unknown>;
      ha.set({ role: 'standby', fencingToken: 6, holder: 'other' });
      const b = JSON.parse((await request('/status')).body) as Record<string, unknown>;
      assert.deepEqual([a.role, a.fencing_token, b.role, b.fencing_token, b.holder], ['active', 5, 'standby', 6, 'other']);
    });
  });

  describe('errors', () => {
    it('answers 404 with a JSON error body for an unknown path', async () => {
      const r = await request('/nope');
      assert.equal(r.status, 404);
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.deepEqual(JSON.parse(r.body), { error: 'not found', detail: 'no such path /nope; try /readyz, /healthz, /metrics, /status or /cluster' });
    });

    it('answers 404 JSON for an unknown path whatever the method', async () => {
      const r = await request('/nope', 'POST');
      assert.equal(r.status, 404);
      assert.equal((JSON.parse(r.body) as { error: string }).error, 'not found');
    });

    it('answers 405 with a JSON error body and an Allow header for POST /readyz', async () => {
      ha.setRole('active');
      const r = await request('/readyz', 'POST');
      assert.equal(r.status, 405);
      assert.equal(r.headers.get('allow'), 'HEAD, GET');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.deepEqual(JSON.parse(r.body), { error: 'method not allowed', detail: 'POST is not supported on /readyz; use HEAD, GET' });
    });

    for (const path of ['/healthz', '/metrics', '/status']) {
      it(`answers 405 JSON for DELETE ${path}`, async () => {
        const r = await request(path, 'DELETE');
        assert.equal(r.status, 405);
        assert.equal(r.headers.get('allow'), 'HEAD, GET');
        assert.equal((JSON.parse(r.body) as { error: string }).error, 'method not allowed');
      });
    }

    it('answers 405 JSON, not a text 501, for a method the router does not know', async () => {
      const r = await request('/readyz', 'PROPFIND');
      assert.equal(r.status, 405);
      assert.equal(r.headers.get('allow'), 'HEAD, GET');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
      assert.deepEqual(JSON.parse(r.body), { error: 'method not allowed', detail: 'PROPFIND is not supported on /readyz; use HEAD, GET' });
    });

    it('matches paths as the router did: any case, one trailing slash, query string ignored', async () => {
      ha.setRole('active');
      for (const path of ['/READYZ', '/readyz/', '/readyz?probe=1']) {
        const r = await request(path);
        assert.equal(r.status, 200, path);
        assert.equal(r.body, '{"ready": true, "role": "active"}', path);
      }
      assert.equal((await request('/readyz//')).status, 404);
    });

    it('answers HEAD /readyz like GET, without a body', async () => {
      ha.setRole('standby');
      const r = await request('/readyz', 'HEAD');
      assert.equal(r.status, 503);
      assert.equal(r.body, '');
      assert.equal(r.headers.get('content-type'), JSON_TYPE);
    });
  });
});
