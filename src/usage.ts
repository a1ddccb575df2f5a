import { DEFAULTS, LOG_LEVELS, MAX_REDIS_DB } from './config';
import { VERSION } from './version';

/** Every setting, as `grinder --help` lists it. The README's configuration table says the same at length. */
export const SETTINGS: readonly { name: string; default: string; meaning: string }[] = [
  {
    name: 'GRINDER_HA_ENABLED',
    default: String(DEFAULTS.haEnabled),
    meaning: 'Elect one ACTIVE replica through a Redis lease (true/false/1/0/yes/no). Off: this replica is ACTIVE and needs no Redis.',
  },
  {
    name: 'GRINDER_REDIS_URL',
    default: DEFAULTS.redisUrl,
    meaning: `redis://[[user]:password@]host[:port][/db] or rediss:// (TLS); db 0 to ${MAX_REDIS_DB}. redis+sentinel://host:port[,host:port...]/<master name>[/db] (Sentinel), redis+cluster://host:port[,host:port...] (Cluster). The password is never printed.`,
  },
  {
    name: 'GRINDER_REDIS_SENTINEL_PASSWORD',
    default: 'unset',
    meaning: "The Sentinels' own password (and GRINDER_REDIS_SENTINEL_USERNAME), when they have one.",
  },
  { name: 'GRINDER_REDIS_SENTINEL_USERNAME', default: 'unset', meaning: "The Sentinels' own ACL user name." },
  {
    name: 'GRINDER_REDIS_MIN_REPLICAS',
    default: 'auto',
    meaning:
      'Replicas that must acknowledge each lease write (WAIT) before it counts: auto (Sentinel/Cluster: one once the master was seen with a replica; one Redis: none) or 0 to 16.',
  },
  {
    name: 'GRINDER_HA_LOCK_TTL_MS',
    default: String(DEFAULTS.lockTtlMs),
    meaning: 'Lease TTL, 1000 to 3600000 ms: a dead leader is replaced within this time.',
  },
  {
    name: 'GRINDER_HA_RENEW_INTERVAL_MS',
    default: String(DEFAULTS.renewIntervalMs),
    meaning: 'How often the ACTIVE replica renews (and a STANDBY retries); about a third of the TTL.',
  },
  {
    name: 'GRINDER_HA_LOCK_KEY',
    default: DEFAULTS.lockKey,
    meaning: 'Redis key of the lease record; related keys carry it as a hash tag ({<key>}:token, ...).',
  },
  {
    name: 'GRINDER_CLUSTER',
    default: 'the lock key',
    meaning: 'The grinder_cluster label on every series, by which alerts and the dashboard separate clusters.',
  },
  { name: 'GRINDER_INSTANCE_ID', default: 'grinder-<hostname>-<8 hex>', meaning: "This replica's name in /status, metrics, logs and spans." },
  {
    name: 'GRINDER_METRICS_PORT',
    default: String(DEFAULTS.metricsPort),
    meaning: 'Port of /readyz, /healthz, /metrics, /status and /cluster (--metrics-port N overrides it).',
  },
  { name: 'GRINDER_HTTP_HOST', default: DEFAULTS.httpHost, meaning: 'Address the HTTP server binds to: an IP address of this machine or a host name.' },
  {
    name: 'GRINDER_ADVERTISE_URL',
    default: 'http://<hostname>:<metrics port>',
    meaning: "Where other tools reach this replica's HTTP endpoint, as grinder list and /cluster show it: http(s)://host[:port], no path or user info.",
  },
  { name: 'GRINDER_LOG_LEVEL', default: DEFAULTS.logLevel, meaning: `${LOG_LEVELS.join(', ')}. JSON lines on stdout.` },
  {
    name: 'GRINDER_LIVE_ENABLED',
    default: String(DEFAULTS.liveEnabled),
    meaning: 'Run the built-in live loop (fenced writes to a Redis stream) while ACTIVE; HA mode only.',
  },
  { name: 'GRINDER_LIVE_INTERVAL_MS', default: String(DEFAULTS.liveIntervalMs), meaning: 'Interval between live writes.' },
  { name: 'GRINDER_LIVE_STREAM_KEY', default: '{<lock key>}:live', meaning: 'Stream the live loop appends to.' },
  { name: 'GRINDER_LIVE_STREAM_MAXLEN', default: String(DEFAULTS.liveStreamMaxLen), meaning: "Approximate cap on that stream's length." },
  {
    name: 'GRINDER_LIVE_MAX_FAILURES',
    default: String(DEFAULTS.liveMaxFailures),
    meaning: 'Live writes Redis answered with an error in a row after which the ACTIVE replica resigns (1 to 1000).',
  },
  { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', default: 'unset', meaning: 'Export lease spans over OTLP there (e.g. http://tempo:4318); unset: no export.' },
  { name: 'OTEL_EXPORTER_OTLP_PROTOCOL', default: 'http/protobuf', meaning: 'http/protobuf, http/json or grpc.' },
  { name: 'OTEL_TRACES_EXPORTER', default: 'otlp if an endpoint is set', meaning: 'otlp, console (JSON lines on stderr) or none; a comma-separated list.' },
  { name: 'OTEL_SERVICE_NAME', default: 'grinder', meaning: 'service.name of the spans; OTEL_RESOURCE_ATTRIBUTES adds resource attributes.' },
  { name: 'OTEL_LOG_LEVEL', default: 'unset', meaning: "NONE, ERROR, WARN, INFO, DEBUG, VERBOSE or ALL: the SDK's own diagnostics, as JSON log lines." },
];

export function usage(): string {
  const width = Math.max(...SETTINGS.map((s) => s.name.length));
  const lines = SETTINGS.map((s) => `  ${s.name.padEnd(width)}  ${s.meaning} [default: ${s.default}]`);
  return `grinder ${VERSION}: keeps exactly one replica ACTIVE through a Redis lease lock.

Usage: grinder [--metrics-port N]         run a replica
       grinder list [--json]              show every replica: role, token, lease left, health
       grinder switchover [--to ID]       move leadership to a healthy STANDBY, no overlap
       grinder init                       declare a brand-new cluster: first leader at once
       grinder --help | --version         (grinder <command> --help explains a command)

Configured through environment variables; a bad value stops start-up with exit code 2 and one
line on stderr. The other standard OTEL_* variables (OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*,
OTEL_TRACES_SAMPLER, ...) work as the OpenTelemetry SDK specifies.

${lines.join('\n')}

Signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT stop gracefully (the lease is released first, so
another replica takes over at once); SIGUSR1 and SIGUSR2 are ignored (SIGUSR1 does not open the
Node inspector).
Exit codes: 0 stopped cleanly; 1 unexpected failure; 2 configuration refused; 137 killed by the
shutdown watchdog after a stop that hung.
`;
}
