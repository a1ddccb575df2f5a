import {
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_RESPONSE_STATUS_CODE,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '@opentelemetry/semantic-conventions';

/**
 * Every metric, span and attribute name GRINDER HA emits. Dashboards, alert rules and runbooks
 * depend on these strings, so they live in one place and nowhere else spells them out.
 */

export const METER_NAME = 'grinder';
export const TRACER_NAME = 'grinder';

export const Metric = {
  haRole: 'grinder_ha_role',
  haIsLeader: 'grinder_ha_is_leader',
  haEnabled: 'grinder_ha_enabled',
  haRenewLatency: 'grinder_ha_renew_latency_seconds',
  haLockFailures: 'grinder_ha_lock_failures_total',
  haTransitions: 'grinder_ha_transitions_total',
  haFencingToken: 'grinder_ha_fencing_token',
  haLeaseRemaining: 'grinder_ha_lease_remaining_seconds',
  haLockTtl: 'grinder_ha_lock_ttl_seconds',
  haRenewInterval: 'grinder_ha_renew_interval_seconds',
  haRedisUp: 'grinder_ha_redis_up',
  up: 'grinder_up',
  uptime: 'grinder_uptime_seconds',
  buildInfo: 'grinder_build_info',
  liveWrites: 'grinder_live_writes_total',
  liveLastAcceptedWriteAge: 'grinder_live_last_accepted_write_age_seconds',
  haRedisMaxmemoryPolicy: 'grinder_ha_redis_maxmemory_policy',
  haRedisDurable: 'grinder_ha_redis_durable',
  haRedisRollbacks: 'grinder_ha_redis_rollbacks_total',
  haBarriers: 'grinder_ha_barriers_total',
  haRedisMasterChanges: 'grinder_ha_redis_master_changes_total',
  haReplicaAcks: 'grinder_ha_replica_acks_total',
  readyzReady: 'grinder_readyz_ready',
} as const;

/**
 * What @opentelemetry/instrumentation-runtime-node exports, as Prometheus spells it (dots become
 * underscores; the exporter adds no unit suffix). Listed here because the dashboard reads them.
 */
export const RuntimeMetric = {
  eventLoopDelayP99: 'nodejs_eventloop_delay_p99',
  eventLoopDelayMax: 'nodejs_eventloop_delay_max',
  eventLoopUtilization: 'nodejs_eventloop_utilization',
  gcDuration: 'v8js_gc_duration',
  heapUsed: 'v8js_memory_heap_used',
  heapSpaceSize: 'v8js_memory_heap_space_size',
} as const;

/**
 * The resource attribute that names this replica's cluster. The Prometheus serializer promotes it
 * to the label `grinder_cluster` on every series (after the series' own labels).
 */
export const CLUSTER_RESOURCE_ATTRIBUTE = 'grinder.cluster';

export const Label = {
  role: 'role',
  operation: 'operation',
  reason: 'reason',
  from: 'from',
  to: 'to',
  version: 'version',
  instanceId: 'instance_id',
  result: 'result',
  policy: 'policy',
} as const;

export const Span = {
  acquire: 'grinder.ha.acquire',
  renew: 'grinder.ha.renew',
  release: 'grinder.ha.release',
  liveWrite: 'grinder.live.write',
} as const;

export const Attr = {
  instanceId: 'grinder.instance.id',
  lockKey: 'grinder.ha.lock_key',
  result: 'grinder.ha.result',
  fencingToken: 'grinder.ha.fencing_token',
  holder: 'grinder.ha.holder',
  failureReason: 'grinder.ha.failure_reason',
  barrierReason: 'grinder.ha.barrier_reason',
} as const;

/** The failure vocabulary belongs to the election (src/ha/lock.ts); re-exported for the instruments. */
export { LOCK_FAILURE_REASONS, type LockFailureReason, type LockOperation } from '../ha/lock';

/** The OpenTelemetry semantic conventions (stable database attributes) on lease and Redis command spans. */
export const SemAttr = {
  dbSystemName: ATTR_DB_SYSTEM_NAME,
  dbNamespace: ATTR_DB_NAMESPACE,
  dbOperationName: ATTR_DB_OPERATION_NAME,
  dbResponseStatusCode: ATTR_DB_RESPONSE_STATUS_CODE,
  serverAddress: ATTR_SERVER_ADDRESS,
  serverPort: ATTR_SERVER_PORT,
  errorType: ATTR_ERROR_TYPE,
} as const;

/**
 * db.system.name for Redis. The value is still in the incubating part of the conventions, which
 * its maintainers ask users to copy rather than import (it may change between minor versions).
 */
export const DB_SYSTEM_REDIS = 'redis';

/** Results of a fenced live write: accepted; rejected (a newer leadership exists); failed (no answer or an error). */
export const LIVE_WRITE_RESULTS = ['accepted', 'rejected', 'failed'] as const;
export type LiveWriteResult = (typeof LIVE_WRITE_RESULTS)[number];

/** Why an acquire wrote a barrier; `rollback` is what grinder_ha_redis_rollbacks_total counts. */
export const BARRIER_REASONS = ['data_loss', 'record_missing', 'rollback'] as const;
