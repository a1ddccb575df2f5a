import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { e2eKit } from '../support/e2e';
import { freePort } from '../../tools/kit/ports';
import { sleep, waitFor } from '../../tools/kit/time';

const TTL = 1_000;
const RENEW = 250;
const { redis, replica, haEnv, becomes, onCleanup } = e2eKit(TTL, RENEW);

describe('the service as containers run it (node dist/main.js)', () => {
  it('with HA disabled needs no Redis, is ACTIVE, and stops on SIGTERM with exit code 0', async () => {
    const r = await replica({ GRINDER_REDIS_URL: 'redis://127.0.0.1:1/0' });
    const ready = await r.get('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body, '{"ready": true, "role": "active"}');
    const status = JSON.parse((await r.get('/status')).body) as Record<string, unknown>;
    assert.equal(status.ha_enabled, false);
    assert.equal(status.role, 'active');
    const metrics = (await r.get('/metrics')).body;
    assert.match(metrics, /^grinder_ha_enabled\{grinder_cluster="grinder:leader:lock"\} 0$/m);
    assert.match(metrics, /^grinder_ha_role\{role="active",grinder_cluster="grinder:leader:lock"\} 1$/m);
    assert.match(metrics, /^grinder_readyz_ready\{grinder_cluster="grinder:leader:lock"\} 1$/m);
    const t0 = Date.now();
    assert.equal(await r.stop('SIGTERM'), 0);
    assert.ok(Date.now() - t0 < 3_000, 'stops within a few seconds');
  });

  it('never shows the Redis password: not in logs, /status, /metrics or errors, whether AUTH works or not', async () => {
    const secret = 'pa55-Very-Secret';
    const server = await redis({ extraArgs: ['--requirepass', secret] });
    const good = await replica(haEnv(`redis://:${secret}@127.0.0.1:${server.port}/0`, 'auth-ok'));
    await becomes(good, 'active');
    const bad = await replica(haEnv(`redis://:wrong-${secret}@127.0.0.1:${server.port}/0`, 'auth-bad'));
    await waitFor('the bad replica to count a lock failure', async () =>
      /grinder_ha_lock_failures_total\{operation="acquire",reason="connection",grinder_cluster="[^"]+"\} [1-9]/.test((await bad.get('/metrics')).body)
        ? true
        : undefined,
    );
    for (const r of [good, bad]) {
      const seen = [JSON.stringify(r.logs), r.stderr.join(''), (await r.get('/status')).body, (await r.get('/metrics')).body].join('\n');
      assert.ok(!seen.includes(secret), `the password leaked from replica ${r.port}`);
    }
    assert.ok(JSON.stringify(good.logs).includes('***'), 'the start-up line shows the URL with the password masked');
  });

  it('started while Redis is down, becomes ACTIVE as soon as Redis appears', async () => {
    const port = await freePort();
    const r = await replica(haEnv(`redis://127.0.0.1:${port}/0`, 'early'));
    await waitFor('an acquire attempt that found no Redis', async () =>
      /grinder_ha_lock_failures_total\{operation="acquire",reason="connection",grinder_cluster="[^"]+"\} [1-9]/.test((await r.get('/metrics')).body)
        ? true
        : undefined,
    );
    assert.equal(await r.readyRole(), 'standby');
    assert.equal(JSON.parse((await r.get('/status')).body).redis_connected, false);
    const server = await redis({ port, persistent: true });
    const t0 = Date.now();
    await becomes(r, 'active');
    // A fresh Redis: one TTL of data-loss barrier, then ACTIVE.
    console.log(`# ACTIVE ${Date.now() - t0} ms after Redis appeared (barrier ${TTL} ms)`);
    assert.ok(server.running);
  });

  it('a leader paused (SIGSTOP) past its lease answers 503 to its very first request after waking, and steps down', async () => {
    const server = await redis();
    const a = await replica(haEnv(server.url, 'zombie'));
    await becomes(a, 'active');
    const b = await replica(haEnv(server.url, 'successor'));
    await becomes(b, 'standby');
    a.signal('SIGSTOP');
    await becomes(b, 'active');
    // Queued in the kernel while a is stopped: it is the first thing a handles when it wakes.
    const firstAnswer = a.get('/readyz');
    await sleep(50);
    a.signal('SIGCONT');
    const first = await firstAnswer;
    assert.equal(first.status, 503, `the woken leader answered ${first.status} ${first.body}`);
    assert.equal(first.body, '{"ready": false, "role": "standby"}');
    await becomes(a, 'standby');
    assert.equal(await b.readyRole(), 'active');
    const stepDown = a.logsWith('role changed').find((l) => l.from === 'active');
    assert.ok(stepDown, 'a logged its step-down');
    assert.ok(typeof stepDown.valid_until_mono_ms === 'number' && typeof stepDown.mono_ms === 'number');
    assert.ok(stepDown.valid_until_mono_ms < stepDown.mono_ms, 'the leadership ended before the line could be written');
  });

  it('exports lease spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, with trace ids in the logs', async () => {
    const bodies: string[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('latin1')));
      req.on('end', () => {
        if (req.url === '/v1/traces') bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve));
    onCleanup(() => new Promise((resolve) => receiver.close(resolve)));
    const server = await redis();
    const r = await replica(haEnv(server.url, 'traced', { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '100' }));
    await becomes(r, 'active');
    await waitFor('spans at the OTLP receiver', () => (bodies.some((b) => b.includes('grinder.ha.renew')) ? true : undefined), 10_000);
    const all = bodies.join('\n');
    for (const s of ['grinder.ha.acquire', 'grinder.ha.renew', 'grinder.instance.id', 'grinder.ha.lock_key', 'grinder.ha.fencing_token', 'traced']) {
      assert.ok(all.includes(s), `exported spans mention ${s}`);
    }
    assert.equal(r.logs.find((l) => l.msg === 'grinder started')?.traces_exported, true);
    // Lock failures are logged inside their span: kill Redis and look for a trace id on them.
    await server.stop();
    await waitFor('a lock failure log line with a trace id', () =>
      r.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('lock ') && typeof l.trace_id === 'string' && /^[0-9a-f]{32}$/.test(l.trace_id))
        ? true
        : undefined,
    );
  });

  it('exports nothing when no OTLP endpoint is configured', async () => {
    const server = await redis();
    const r = await replica(haEnv(server.url, 'untraced'));
    await becomes(r, 'active');
    assert.equal(r.logs.find((l) => l.msg === 'grinder started')?.traces_exported, false);
  });
});
