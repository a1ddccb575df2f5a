// The cluster view's pure parts: the script reply, the registrations, the view built from them
// (the record decides who leads) and the `grinder list` table.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRegistration, type Registration } from '../../src/cluster/registration';
import { formatClusterTable, roleLabel } from '../../src/cluster/table';
import { buildClusterView, isHealthyStandby, lateAfterMs, parseClusterReadout, type ClusterReadout, type ClusterView } from '../../src/cluster/view';
import { UnexpectedReplyError } from '../../src/redis/commands';

const NOW = 1_800_000_000_000;
const TOKEN = 1_796_663_438_192_503;
const LOCK = 'grinder:leader:lock';

function registration(id: string, over: Partial<Registration> = {}, heartbeatAgoMs = 100): string {
  const r: Registration = {
    instance_id: id,
    role: 'standby',
    fencing_token: TOKEN,
    lease_remaining_ms: 9_000,
    http_url: `http://${id}:9090`,
    version: '0.2.0',
    started_at: '2026-01-01T00:00:00.000Z',
    healthy: true,
    ttl_ms: 10_000,
    renew_interval_ms: 3_000,
    ...over,
  };
  // As the heartbeat script stores it: heartbeat_ms spliced in first.
  return `{"heartbeat_ms":${NOW - heartbeatAgoMs},${JSON.stringify(r).slice(1)}`;
}

function readout(state: string, instance: string, ids: string[]): ClusterReadout {
  const reply: (string | number)[] = [String(NOW), state, String(TOKEN), '10000', instance, ids.length];
  for (const id of ids) reply.push(id, String(NOW + 9_900));
  return parseClusterReadout(reply);
}

function view(state: string, instance: string, regs: Record<string, string | null>): ClusterView {
  return buildClusterView(LOCK, readout(state, instance, Object.keys(regs)), new Map(Object.entries(regs)));
}

describe('parseClusterReadout', () => {
  it('reads the clock, the record and the index', () => {
    const r = readout('held', 'a', ['b', 'a']);
    assert.deepEqual(r, {
      nowMs: NOW,
      lease: { state: 'held', instance_id: 'a', token: TOKEN, ttl_ms: 10_000 },
      index: [
        { instanceId: 'b', expiresAtMs: NOW + 9_900 },
        { instanceId: 'a', expiresAtMs: NOW + 9_900 },
      ],
    });
  });

  it('knows no record, a foreign string and a key of another type, without a holder or token', () => {
    for (const [state, expected] of [
      ['missing', 'missing'],
      ['foreign', 'foreign'],
      ['hash', 'anomaly'],
      ['stream', 'anomaly'],
    ] as const) {
      const r = parseClusterReadout([String(NOW), state, '', '', '', 0]);
      assert.deepEqual(r.lease, { state: expected, instance_id: null, token: null, ttl_ms: null });
    }
  });

  it('refuses a reply its script header does not allow', () => {
    for (const bad of [
      null,
      'x',
      [],
      [String(NOW), 'held', '1', '1', 'a', 2, 'b', '1'],
      ['soon', 'held', '1', '1', 'a', 0],
      [String(NOW), 'held', '1', '1', 'a', 1, 'b', 'never'],
    ]) {
      assert.throws(() => parseClusterReadout(bad), UnexpectedReplyError, JSON.stringify(bad));
    }
  });
});

describe('parseRegistration', () => {
  it('keeps the known fields of a stored registration, and the 16-digit token exactly', () => {
    const r = parseRegistration(registration('a').replace('{', '{"future_field":1,'));
    assert.ok(r);
    assert.equal(r.fencing_token, TOKEN);
    assert.equal(r.heartbeat_ms, NOW - 100);
    assert.ok(!('future_field' in r));
  });

  it('refuses garbage and registrations with a field missing or of the wrong type', () => {
    const good = JSON.parse(registration('a')) as Record<string, unknown>;
    assert.equal(parseRegistration(null), null);
    assert.equal(parseRegistration('not json'), null);
    assert.equal(parseRegistration('[]'), null);
    for (const key of Object.keys(good)) {
      const { [key]: _dropped, ...rest } = good;
      assert.equal(parseRegistration(JSON.stringify(rest)), null, `without ${key}`);
      assert.equal(parseRegistration(JSON.stringify({ ...good, [key]: { x: 1 } })), null, `${key} an object`);
    }
    assert.equal(parseRegistration(JSON.stringify({ ...good, role: 'leader' })), null, 'an unknown role');
    assert.equal(parseRegistration(JSON.stringify({ ...good, fencing_token: 1.5 })), null, 'a token that is not an integer');
  });
});

describe('buildClusterView', () => {
  it('marks the record holder as the one leader, ages on Redis clock, sorted by id', () => {
    const v = view('held', 'b', {
      c: registration('c', {}, 2_000),
      b: registration('b', { role: 'active', lease_remaining_ms: 9_500 }, 500),
      a: registration('a'),
    });
    assert.deepEqual(
      v.members.map((m) => m.instance_id),
      ['a', 'b', 'c'],
    );
    assert.equal(v.leader, 'b');
    assert.deepEqual(
      v.members.map((m) => m.leader),
      [false, true, false],
    );
    const b = v.members[1];
    assert.ok(b);
    assert.equal(b.last_seen_ms, 500);
    assert.equal(b.lease_remaining_ms, 9_000, 'what it reported, less the age of its heartbeat');
    assert.equal(b.expires_in_ms, 9_900);
    assert.equal(b.heartbeat_ms, NOW - 500);
    assert.equal(v.redis_time_ms, NOW);
    assert.equal(v.handoff_to, null);
    assert.deepEqual(v.unreadable, []);
  });

  it('never calls a member leader that the record does not name, even when it reports ACTIVE', () => {
    const v = view('held', 'b', { a: registration('a', { role: 'active' }), b: registration('b', { role: 'active' }) });
    const [a, b] = v.members;
    assert.ok(a && b);
    assert.equal(a.leader, false);
    assert.equal(a.claims_active_without_lease, true);
    assert.equal(b.leader, true);
    assert.equal(b.claims_active_without_lease, false);
    for (const state of ['free', 'barrier', 'handoff']) {
      const w = view(state, 'a', { a: registration('a', { role: 'active' }) });
      assert.equal(w.leader, null, `no leader while the record is ${state}`);
      assert.equal(w.members[0]?.leader, false);
      assert.equal(w.members[0]?.claims_active_without_lease, true);
    }
  });

  it('names the successor of a handoff', () => {
    const v = view('handoff', 'b', { a: registration('a'), b: registration('b') });
    assert.equal(v.handoff_to, 'b');
    assert.equal(v.leader, null);
    assert.deepEqual(v.lease, { state: 'handoff', instance_id: 'b', token: TOKEN, ttl_ms: 10_000 });
  });

  it('judges health: reported unhealthy, late heartbeat, ok; only a healthy STANDBY that is not the leader is a switchover target', () => {
    const late = lateAfterMs({ ttl_ms: 10_000, renew_interval_ms: 3_000 });
    assert.equal(late, 4_500 + 2_000, '1.5 renew intervals plus one Redis timeout');
    const v = view('held', 'lead', {
      ok: registration('ok', {}, late),
      late: registration('late', {}, late + 1),
      sick: registration('sick', { healthy: false }),
      lead: registration('lead', { role: 'active' }),
      unknown: registration('unknown', { role: 'unknown' }),
    });
    const by = new Map(v.members.map((m) => [m.instance_id, m]));
    assert.deepEqual(
      [...by.values()].map((m) => [m.instance_id, m.health, m.healthy, isHealthyStandby(m)]),
      [
        ['late', 'late', false, false],
        ['lead', 'ok', true, false],
        ['ok', 'ok', true, true],
        ['sick', 'unhealthy', false, false],
        ['unknown', 'ok', true, false],
      ],
    );
  });

  it('leaves out registrations that expired after the index was read, and lists unreadable ones apart', () => {
    const v = view('held', 'a', { a: registration('a', { role: 'active' }), gone: null, junk: '{"v":9}', imposter: registration('someone-else') });
    assert.deepEqual(
      v.members.map((m) => m.instance_id),
      ['a'],
    );
    assert.deepEqual(v.unreadable, ['imposter', 'junk']);
  });

  it('never shows a negative age or lease for a heartbeat newer than the clock reading', () => {
    const v = view('held', 'a', { a: registration('a', { role: 'active', lease_remaining_ms: 100 }, -50) });
    assert.equal(v.members[0]?.last_seen_ms, 0);
    const w = view('held', 'a', { a: registration('a', { role: 'active', lease_remaining_ms: 100 }, 400) });
    assert.equal(w.members[0]?.lease_remaining_ms, 0);
  });
});

describe('formatClusterTable', () => {
  const v = view('held', 'grinder_live_1', {
    grinder_live_1: registration('grinder_live_1', { role: 'active', lease_remaining_ms: 9_875 }, 400),
    grinder_live_2: registration('grinder_live_2', { lease_remaining_ms: 7_250 }, 1_200),
  });

  it('prints a patronictl-style table: cluster on the top border, one row per member, the lease under it', () => {
    assert.equal(
      formatClusterTable(v, { cluster: LOCK }),
      [
        '+ Cluster: grinder:leader:lock ---------------+------------+-----------+--------+---------+----------------------------+',
        '| Member         | Role    | Token            | Lease left | Last seen | Health | Version | HTTP                       |',
        '+----------------+---------+------------------+------------+-----------+--------+---------+----------------------------+',
        '| grinder_live_1 | Leader  | 1796663438192503 |      9.5 s | 0.4 s ago | ok     | 0.2.0   | http://grinder_live_1:9090 |',
        '| grinder_live_2 | Standby | 1796663438192503 |      6.0 s | 1.2 s ago | ok     | 0.2.0   | http://grinder_live_2:9090 |',
        '+----------------+---------+------------------+------------+-----------+--------+---------+----------------------------+',
        'Lease: held by grinder_live_1, token 1796663438192503, TTL 10.0 s',
        '',
      ].join('\n'),
    );
  });

  it('leaves the HTTP column out when the table would not fit the width, and names the lock key when the cluster is named otherwise', () => {
    const text = formatClusterTable(v, { cluster: 'prod-eu', width: 100 });
    const lines = text.split('\n');
    assert.equal(lines[0], '+ Cluster: prod-eu (lock key grinder:leader:lock) ---------+-----------+--------+---------+');
    assert.ok(!text.includes('HTTP'), text);
    const table = lines.filter((l) => /^[+|]/.test(l));
    assert.equal(table.length, 6);
    assert.ok(
      table.every((l) => l.length === (table[1] as string).length && l.length <= 100),
      text,
    );
    assert.ok(formatClusterTable(v, { cluster: LOCK, width: 120 }).includes('| HTTP'), 'included when it fits');
  });

  it('says who leads by the record, and warns when a member claims ACTIVE without it or the holder is not registered', () => {
    const w = view('held', 'ghost', { a: registration('a', { role: 'active' }), b: registration('b') });
    assert.equal(roleLabel(w.members[0] as ClusterView['members'][number]), 'Active (no lease)');
    const text = formatClusterTable(w, { cluster: LOCK });
    assert.match(text, /\| a {6}\| Active \(no lease\) \|/);
    assert.match(text, /^Warning: the lease is held by ghost, which is not registered: it stopped heartbeating/m);
    assert.match(text, /^Warning: a reported ACTIVE 0\.1 s ago but the lease record is held by ghost/m);
    const stepped = view('held', 'a', { a: registration('a', { role: 'standby' }) });
    assert.match(formatClusterTable(stepped, { cluster: LOCK }), /\| a {6}\| Leader \(standby\) \|/);
  });

  it('explains every other record state and an empty cluster', () => {
    const lines = (state: string, regs: Record<string, string | null> = {}): string =>
      formatClusterTable(view(state, 'b', regs), { cluster: LOCK })
        .split('\n')
        .filter((l) => !/^[+|]/.test(l))
        .join('\n');
    assert.match(lines('handoff', { a: registration('a') }), /^Lease: handed off to b, token \d+ \(a switchover in progress\)/);
    assert.match(lines('free', { a: registration('a') }), /^Lease: free \(released by b, token \d+\): the next STANDBY takes it at once/);
    assert.match(lines('barrier', { a: registration('a') }), /^Lease: barrier, token \d+: nobody leads until it has stood for 10\.0 s/);
    assert.match(lines('missing', { a: registration('a') }), /^Lease: no record at the lock key yet/);
    assert.match(lines('foreign', { a: registration('a') }), /^Lease: the lock key holds a string that is not a GRINDER lease record/);
    assert.match(lines('hash', { a: registration('a') }), /^Lease: the lock key holds a Redis type other than a string/);
    assert.match(lines('held'), /^No member is registered: are the replicas running, with GRINDER_HA_ENABLED=true/m);
  });
});
