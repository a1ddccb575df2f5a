// The shipped alert rules, live: real Redis (persistent, like the compose file), the runbook's two
// replicas and Prometheus loading the shipped rules with every `for:` scaled like the lease timing
// (see live-stack.ts). Expressions are the shipped ones.
//
//  1. A normal failover (the ACTIVE replica is killed and its supervisor restarts it) pages
//     nobody: no GrinderHA* alert fires, from the kill until well past the longest `for:` that
//     could be reached.
//  2. Redis stops (the runbook's "Redis failure"): GrinderHABothStandby fires.
//  3. Redis starts again: it resolves.
// The failover runs first, so the Redis outage's lock failures do not sit in the rate windows.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MAIN_JS } from '../support/replica';
import { freePort } from '../support/ports';
import { sleep, waitFor } from '../support/wait';
import type { PromAlert, Sample } from '../support/prometheus';
import { LiveStack, SCALE, TTL_MS } from './live-stack';

let stack: LiveStack | undefined;

function live(): LiveStack {
  assert.ok(stack, 'the stack did not start');
  return stack;
}

before(async () => {
  readFileSync(MAIN_JS); // ENOENT here means `npm run build` has not run
  stack = await LiveStack.start({ persistent: true, ports: [await freePort(), await freePort()] });
  await stack.waitForSteadyState();
});

after(async () => {
  await stack?.stop();
});

/** Watches /api/v1/alerts in the background and remembers every GrinderHA alert seen firing. */
function watchFiring(s: LiveStack): { seen: PromAlert[]; stop: () => Promise<void> } {
  const seen: PromAlert[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        for (const a of await s.prom.alerts()) {
          if (a.state === 'firing' && a.labels.alertname?.startsWith('GrinderHA')) seen.push(a);
        }
      } catch {
        // Prometheus busy for a moment; the range query at the end is the authoritative check.
      }
      await sleep(200);
    }
  })();
  return {
    seen,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

test('a normal failover (ACTIVE killed, restarted by its supervisor) pages nobody', async () => {
  const s = live();
  // Nothing fires in steady state to begin with (the alert group may lag the recording rules by
  // one evaluation, hence a short wait rather than a single look).
  await waitFor(
    'no alert firing in steady state',
    async () => ((await s.prom.alerts()).some((a) => a.state === 'firing') ? undefined : true),
    10_000,
    200,
  );

  const from = await waitFor('exactly one ACTIVE replica', () => s.activeIndex(), 10_000, 50);
  const tokenBefore = await fencingToken(s, from);
  const watch = watchFiring(s);
  let newLeader: number;
  let killedAt: number;
  try {
    killedAt = Date.now() / 1000;
    await s.replicas[from]?.stop('SIGKILL');
    // Its supervisor (compose `restart: unless-stopped`) brings it back a moment later, within the
    // dead leader's lease: both replicas are then STANDBY and either may win when the lease expires.
    await sleep(1_000);
    await s.restartReplica(from);
    newLeader = await waitFor(
      'a new leadership after the lease of the killed one expired',
      async () => {
        const i = await s.activeIndex();
        return i !== undefined && (await fencingToken(s, i)) > tokenBefore ? i : undefined;
      },
      4 * TTL_MS,
      50,
    );
    await s.waitForSteadyState();
    // Stay well past the BothStandby for: (30 s × SCALE) and the ReplicaDown for: (1 m × SCALE)
    // counted from the kill, so anything the failover could trigger has had time to fire.
    const waitUntil = killedAt + 60 * SCALE + 4;
    await sleep(Math.max(0, waitUntil * 1000 - Date.now()));
  } finally {
    // Also on failure: a poller left running would keep this file's process alive forever.
    await watch.stop();
  }

  assert.deepEqual(watch.seen.map((a) => a.labels.alertname), [], 'alerts fired during a normal failover');
  // Authoritative: Prometheus' own ALERTS series over the whole window has no firing sample.
  const now = Date.now() / 1000;
  const r = await s.prom.queryRange('ALERTS{alertstate="firing", alertname=~"GrinderHA.*"}', killedAt - 1, now, 1);
  assert.deepEqual((r.result as Sample[]).map((x) => x.metric.alertname), []);
  // The failover really happened, and the new leadership is still the one in charge.
  assert.equal(await s.activeIndex(), newLeader);
  assert.ok((await fencingToken(s, newLeader)) > tokenBefore);
});

async function fencingToken(s: LiveStack, i: number): Promise<number> {
  const status = JSON.parse((await s.replicas[i]?.get('/status'))?.body ?? '{}') as { fencing_token?: unknown };
  return typeof status.fencing_token === 'number' ? status.fencing_token : -1;
}

test('Redis stops: GrinderHABothStandby fires; Redis starts: it resolves', async () => {
  const s = live();
  assert.equal(await s.firing('GrinderHABothStandby'), false, 'firing before Redis stopped');

  await s.redis.stop('SIGTERM'); // docker stop grinder-redis
  const fired = await waitFor(
    'GrinderHABothStandby to fire',
    async () => {
      const a = (await s.prom.alerts()).find((x) => x.labels.alertname === 'GrinderHABothStandby' && x.state === 'firing');
      return a;
    },
    30_000,
    200,
  );
  // Both replicas really are STANDBY, and the page carries what the operator needs.
  assert.deepEqual((await Promise.all(s.replicas.map((r) => r.readyRole()))).sort(), ['standby', 'standby']);
  assert.equal(fired.labels.severity, 'critical');
  assert.equal(fired.annotations.runbook_url, 'docs/runbooks/ha-operations.md#grinderhabothstandby');
  assert.match(fired.annotations.description ?? '', /\(2 replica target\(s\) up\)/);

  await s.redis.startProcess(); // docker start grinder-redis (appendonly: the lease state survives)
  await waitFor(
    'GrinderHABothStandby to resolve',
    async () => {
      const alerts = await s.prom.alerts();
      return alerts.some((x) => x.labels.alertname === 'GrinderHABothStandby') ? undefined : true;
    },
    30_000,
    200,
  );
  assert.notEqual(await s.activeIndex(), undefined, 'no replica ACTIVE after Redis came back');
});
