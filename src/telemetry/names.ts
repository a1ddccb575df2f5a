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
} as const;

export const Label = {
  role: 'role',
  operation: 'operation',
  reason: 'reason',
  from: 'from',
  to: 'to',
  version: 'version',
  instanceId: 'instance_id',
  result: 'result',
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
} as const;

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

/** Lease operations, as they appear in the `operation` label and span names. */
export type LockOperation = 'acquire' | 'renew' | 'release';

/**
 * Why a lease operation failed. A small fixed set so the `reason` label stays low-cardinality:
 * - timeout: Redis did not answer within the command timeout;
 * - connection: no usable connection to Redis;
 * - lost: the lease was no longer ours when we tried to renew or release it;
 * - wrong_type: the lock key holds a non-string Redis type;
 * - invalid_value: the lock key holds a string that is not a GRINDER lease;
 * - script_error: Redis rejected the script (anything else Redis replied with an error).
 */
export const LOCK_FAILURE_REASONS = [
  'timeout',
  'connection',
  'lost',
  'wrong_type',
  'invalid_value',
  'script_error',
] as const;
export type LockFailureReason = (typeof LOCK_FAILURE_REASONS)[number];
