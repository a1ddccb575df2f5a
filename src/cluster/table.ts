import type { ClusterMember, ClusterView } from './view';

export interface TableOptions {
  /** The cluster's name (GRINDER_CLUSTER), shown in the header with the lock key when they differ. */
  cluster: string;
  /** The terminal's width: the HTTP column is left out when the table would not fit. No limit when absent. */
  width?: number | undefined;
}

interface Column {
  title: string;
  right?: boolean;
  cell: (m: ClusterMember) => string;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The Role column: the record decides who is Leader; a member's own claim is shown beside it when they disagree. */
export function roleLabel(m: ClusterMember): string {
  if (m.leader) return m.role === 'active' ? 'Leader' : `Leader (${m.role})`;
  if (m.claims_active_without_lease) return 'Active (no lease)';
  return m.role === 'standby' ? 'Standby' : 'Unknown';
}

const COLUMNS: readonly Column[] = [
  { title: 'Member', cell: (m) => m.instance_id },
  { title: 'Role', cell: roleLabel },
  { title: 'Token', right: true, cell: (m) => (m.fencing_token === null ? '' : String(m.fencing_token)) },
  { title: 'Lease left', right: true, cell: (m) => (m.lease_remaining_ms === null ? '' : seconds(m.lease_remaining_ms)) },
  { title: 'Last seen', right: true, cell: (m) => `${seconds(m.last_seen_ms)} ago` },
  { title: 'Health', cell: (m) => m.health },
  { title: 'Version', cell: (m) => m.version },
];
const HTTP_COLUMN: Column = { title: 'HTTP', cell: (m) => m.http_url };

function render(columns: readonly Column[], members: readonly ClusterMember[]): string[] {
  const rows = members.map((m) => columns.map((c) => c.cell(m)));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[], aligned: boolean): string =>
    `| ${cells.map((text, i) => (aligned && columns[i]?.right ? text.padStart(widths[i] as number) : text.padEnd(widths[i] as number))).join(' | ')} |`;
  const border = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  return [
    border,
    line(
      columns.map((c) => c.title),
      false,
    ),
    border,
    ...rows.map((r) => line(r, true)),
    border,
  ];
}

/** What the record says, in one line under the table. */
function leaseLine(view: ClusterView): string {
  const { lease } = view;
  const token = lease.token === null ? '' : `, token ${lease.token}`;
  switch (lease.state) {
    case 'held':
      return `Lease: held by ${lease.instance_id ?? '?'}${token}, TTL ${seconds(lease.ttl_ms ?? 0)}`;
    case 'free':
      return `Lease: free (released by ${lease.instance_id ?? '?'}${token}): the next STANDBY takes it at once`;
    case 'handoff':
      return `Lease: handed off to ${lease.instance_id ?? '?'}${token} (a switchover in progress): it takes the lease at once; if it does not, another replica does after ${seconds(lease.ttl_ms ?? 0)}`;
    case 'barrier':
      return `Lease: barrier${token}: nobody leads until it has stood for ${seconds(lease.ttl_ms ?? 0)} (after a first start, data loss or a rollback)`;
    case 'missing':
      return 'Lease: no record at the lock key yet: the first replica to try writes a barrier, and a leader is elected one TTL later';
    case 'foreign':
      return 'Lease: the lock key holds a string that is not a GRINDER lease record (another program, or another GRINDER version?): the replicas take it over once it stands still for one TTL';
    case 'anomaly':
      return 'Lease: the lock key holds a Redis type other than a string: somebody else uses this key and nobody can lead; choose another GRINDER_HA_LOCK_KEY or remove that key';
  }
}

/** Warnings about what the record and the registrations say together. */
function notes(view: ClusterView): string[] {
  const out: string[] = [];
  if (view.leader !== null && !view.members.some((m) => m.instance_id === view.leader)) {
    out.push(
      `Warning: the lease is held by ${view.leader}, which is not registered: it stopped heartbeating (dead, or cut off from Redis); a STANDBY takes over once that lease has not been renewed for one TTL.`,
    );
  }
  for (const m of view.members) {
    if (m.claims_active_without_lease) {
      out.push(
        `Warning: ${m.instance_id} reported ACTIVE ${seconds(m.last_seen_ms)} ago but the lease record is ${view.leader === null ? 'held by nobody' : `held by ${view.leader}`}: a stale heartbeat, or it has not noticed yet; look again, and check its /status (${m.http_url}/status) if it stays so.`,
      );
    } else if (m.leader && m.role !== 'active') {
      out.push(
        `Note: the record names ${m.instance_id} as holder, but it reported ${m.role.toUpperCase()}: it stepped down and its lease is waiting to be taken over.`,
      );
    }
  }
  if (view.unreadable.length > 0) {
    out.push(`Warning: unreadable registrations: ${view.unreadable.join(', ')} (another GRINDER version? run one version per lock key).`);
  }
  if (view.members.length === 0) {
    out.push(
      'No member is registered: are the replicas running, with GRINDER_HA_ENABLED=true and the same GRINDER_REDIS_URL and GRINDER_HA_LOCK_KEY as this command?',
    );
  }
  return out;
}

/**
 * `grinder list` as text, in the spirit of `patronictl list`: the cluster's name on the top border,
 * one row per member, then the lease record's state and any warnings.
 */
export function formatClusterTable(view: ClusterView, opts: TableOptions): string {
  const withHttp = render([...COLUMNS, HTTP_COLUMN], view.members);
  const fits = opts.width === undefined || (withHttp[0] as string).length <= opts.width;
  const table = fits ? withHttp : render(COLUMNS, view.members);
  const name = opts.cluster === view.lock_key ? opts.cluster : `${opts.cluster} (lock key ${view.lock_key})`;
  const title = `+ Cluster: ${name} `;
  const border = table[0] as string;
  table[0] = title.length < border.length - 1 ? title + border.slice(title.length) : `${title}+`;
  return [...table, leaseLine(view), ...notes(view)].join('\n') + '\n';
}
