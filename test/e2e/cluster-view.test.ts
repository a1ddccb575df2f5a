// The cluster view with real processes: three `node dist/main.js` replicas on one redis-server of
// the test's own, `grinder list` (as an operator runs it, with the replicas' environment) and
// GET /cluster on every replica; members that are killed or stopped leave the list.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import type { ClusterView } from '../../src/cluster/view';
import { e2eKit } from '../support/e2e';
import { freePort } from '../../tools/kit/ports';
import { runGrinder, type CommandRun as CliRun } from '../../tools/kit/command';
import type { Replica } from '../../tools/kit/replica';
import { waitFor } from '../../tools/kit/time';

const TTL = 1_000;
const RENEW = 250;
const { redis, replica, haEnv } = e2eKit(TTL, RENEW);
/** Room for the kill to land, a poll to run and the event loops to be late on a busy 2-core machine. */
const SCHEDULING_SLACK_MS = 300;

/** `grinder <args>` as an operator runs it: node dist/main.js with the replicas' environment only. */
const grinder = (args: string[], env: Record<string, string>): Promise<CliRun> => runGrinder(args, env, 20_000);

async function clusterOf(r: Replica): Promise<ClusterView> {
  const a = await r.get('/cluster');
  assert.equal(a.status, 200, a.body);
  return JSON.parse(a.body) as ClusterView;
}

/** The lease record as Redis has it: `2|<state>|<ver>|<token>|<ttl>|<maxttl>|<session>|<instance id>`. */
async function record(url: string): Promise<{ state: string; token: number; instance: string }> {
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const [, state, , token, , , , instance] = ((await c.get('grinder:leader:lock')) ?? '').split('|');
    return { state: state ?? '', token: Number(token), instance: instance ?? '' };
  } finally {
    c.disconnect();
  }
}

/** Three replicas on one Redis, each advertising its own address; resolves once one leads and all are listed. */
async function threeReplicas(): Promise<{ url: string; env: Record<string, string>; replicas: Map<string, Replica> }> {
  const server = await redis();
  const replicas = new Map<string, Replica>();
  for (const id of ['alpha', 'bravo', 'charlie']) {
    const port = await freePort();
    replicas.set(id, await replica(haEnv(server.url, id, { GRINDER_ADVERTISE_URL: `http://127.0.0.1:${port}` }), { port }));
  }
  const any = replicas.get('alpha') as Replica;
  // A fresh Redis: one TTL of barrier before the first leader; then every member heartbeats the
  // leadership's token within a renew interval (before, a standby still shows the barrier's).
  await waitFor(
    'one leader and three members that know its token',
    async () => {
      const v = await clusterOf(any);
      return v.leader !== null && v.members.length === 3 && v.members.every((m) => m.role !== 'unknown' && m.fencing_token === v.lease.token)
        ? true
        : undefined;
    },
    TTL * 6,
  );
  return { url: server.url, env: haEnv(server.url, 'operator'), replicas };
}

/** The table's member rows: `| id | Role | Token | ...` → cells. */
function rows(table: string): string[][] {
  return table
    .split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| Member '))
    .map((l) =>
      l
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    );
}

describe('cluster view (grinder list, GET /cluster) with real processes', () => {
  it('lists all three replicas with exactly one leader, the record holder, and its token; --json and /cluster on every replica agree', async () => {
    const { url, env, replicas } = await threeReplicas();
    // Read the record first: a list taken right after it must name the same holder (1 s TTL, renewed, nobody dies).
    const rec = await record(url);
    assert.equal(rec.state, 'held');
    assert.ok(replicas.has(rec.instance), `the record names ${rec.instance}`);

    const list = await grinder(['list'], env);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stderr, '');
    assert.match(list.stdout, /^\+ Cluster: grinder:leader:lock -/);
    const table = rows(list.stdout);
    assert.deepEqual(
      table.map((r) => r[0]),
      ['alpha', 'bravo', 'charlie'],
      list.stdout,
    );
    const leaders = table.filter((r) => r[1] === 'Leader');
    assert.deepEqual(
      leaders.map((r) => r[0]),
      [rec.instance],
      list.stdout,
    );
    for (const r of table) {
      assert.equal(r[1], r[0] === rec.instance ? 'Leader' : 'Standby', list.stdout);
      assert.equal(r[2], String(rec.token), `${r[0]} shows the leadership's token`);
      assert.equal(r[5], 'ok', `${r[0]} is healthy`);
      assert.equal(r[7], `http://127.0.0.1:${replicas.get(r[0] as string)?.port}`, 'the advertised address');
    }
    assert.match(list.stdout, new RegExp(`^Lease: held by ${rec.instance}, token ${rec.token}, TTL 1\\.0 s$`, 'm'));

    const json = await grinder(['list', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const view = JSON.parse(json.stdout) as ClusterView;
    assert.equal(view.lock_key, 'grinder:leader:lock');
    assert.equal(view.leader, rec.instance);
    assert.deepEqual(view.lease, { state: 'held', instance_id: rec.instance, token: rec.token, ttl_ms: TTL });
    assert.deepEqual(
      view.members.map((m) => [m.instance_id, m.leader, m.role, m.fencing_token, m.healthy]),
      ['alpha', 'bravo', 'charlie'].map((id) => [id, id === rec.instance, id === rec.instance ? 'active' : 'standby', rec.token, true]),
    );
    for (const m of view.members) {
      assert.ok(m.last_seen_ms >= 0 && m.last_seen_ms <= RENEW + SCHEDULING_SLACK_MS, `${m.instance_id} last seen ${m.last_seen_ms} ms ago`);
      assert.ok(m.expires_in_ms > 0 && m.expires_in_ms <= TTL, `${m.instance_id} expires in ${m.expires_in_ms} ms`);
      // The advertised address is where that member answers.
      const status = (await (await fetch(`${m.http_url}/status`)).json()) as { instance_id: string };
      assert.equal(status.instance_id, m.instance_id);
    }

    for (const [id, r] of replicas) {
      const v = await clusterOf(r);
      assert.equal(v.leader, rec.instance, `/cluster on ${id}`);
      assert.equal(v.lease.token, rec.token, `/cluster on ${id}`);
      assert.deepEqual(
        v.members.map((m) => [m.instance_id, m.leader, m.http_url]),
        view.members.map((m) => [m.instance_id, m.leader, m.http_url]),
        `/cluster on ${id} lists what grinder list --json does`,
      );
    }
  });

  it('a SIGKILLed replica leaves the list within one TTL of the kill; a SIGTERMed one at once, and its successor shows as leader', async () => {
    const { url, replicas } = await threeReplicas();
    const leaderId = (await record(url)).instance;
    const [killedId, watcherId] = [...replicas.keys()].filter((id) => id !== leaderId) as [string, string];
    const killed = replicas.get(killedId) as Replica;
    const watcher = replicas.get(watcherId) as Replica;
    const listed = async (id: string): Promise<boolean> => (await clusterOf(watcher)).members.some((m) => m.instance_id === id);

    const killedAt = Date.now();
    killed.signal('SIGKILL');
    await killed.exited;
    // Its registration was refreshed at most one renew interval before the kill: still there now.
    assert.ok(await listed(killedId), 'a killed member is listed until its registration expires');
    // Judged by when each look was sent, not when its answer came back on this busy machine: a look
    // that still found the member was read after it was sent, so the member was listed then.
    let lastListedSentAt = killedAt;
    await waitFor(
      `${killedId} gone from /cluster`,
      async () => {
        const sentAt = Date.now();
        if (await listed(killedId)) {
          lastListedSentAt = sentAt;
          return undefined;
        }
        return true;
      },
      TTL * 3,
      10,
    );
    const listedAfter = lastListedSentAt - killedAt;
    console.log(`# SIGKILLed member still listed by a look sent ${listedAfter} ms after the kill, gone at the next (TTL ${TTL} ms)`);
    assert.ok(
      listedAfter <= TTL + SCHEDULING_SLACK_MS,
      `still listed by a look sent ${listedAfter} ms after the kill; must be gone within TTL ${TTL} ms + ${SCHEDULING_SLACK_MS} ms`,
    );

    const leader = replicas.get(leaderId) as Replica;
    assert.equal(await leader.stop('SIGTERM'), 0);
    const v = await clusterOf(watcher);
    assert.deepEqual(
      v.members.map((m) => m.instance_id),
      [watcherId],
      'a SIGTERMed member is gone as soon as it has exited',
    );
    // It released the lease on its way out: the last one takes over at once and says so.
    await waitFor(
      `${watcherId} listed as leader`,
      async () => {
        const w = await clusterOf(watcher);
        return w.leader === watcherId && w.members[0]?.role === 'active' && w.members[0].leader ? true : undefined;
      },
      TTL * 2,
    );
  });

  it('exits 1 saying what to check when Redis cannot be reached', async () => {
    const port = await freePort();
    const runs = await Promise.all([['list'], ['list', '--json']].map((args) => grinder(args, haEnv(`redis://127.0.0.1:${port}/0`, 'operator'))));
    for (const r of runs) {
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^grinder list: cannot reach Redis at redis://127\\.0\\.0\\.1:${port}/0 within 5 s: .*ECONNREFUSED.*; check GRINDER_REDIS_URL \\(run the command with the replicas' environment\\)\\n$`,
        ),
      );
    }
  });

  it('exits 2 with the usage on an unknown option, without echoing its value', async () => {
    const r = await grinder(['list', '--redis-url=redis://:s3cret@x:6379'], { GRINDER_REDIS_URL: 'redis://127.0.0.1:1/0' });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^grinder list: unknown option --redis-url=…; settings come from GRINDER_\* environment variables\n\nUsage: grinder list \[--json\]\n/,
    );
    assert.ok(!r.stderr.includes('s3cret'));
    const help = await grinder(['list', '--help'], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: grinder list \[--json\]/);
  });

  it('with HA disabled, GET /cluster answers 404 saying the cluster view needs HA', async () => {
    const r = await replica({});
    const a = await r.get('/cluster');
    assert.equal(a.status, 404);
    assert.match(a.body, /the cluster view needs HA \(GRINDER_HA_ENABLED=true\)/);
  });
});
