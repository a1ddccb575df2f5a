import { Worker } from 'node:worker_threads';
import type { Config } from './config';
import { leaseTiming } from './ha/timing';
import { LEAVE_WITHIN_MS } from './cluster/membership';
import { SPAN_FLUSH_BUDGET_MS } from './telemetry/sdk';

/** How long leader work may take to finish after its AbortSignal fired (LeaderElector.stop's default). */
const LEADER_WORK_GRACE_MS = 2_000;

/**
 * The longest a graceful stop can legitimately take: leaving the cluster view, a lease call in
 * flight and the release (each bounded by the Redis command timeout), the leader work's grace, the
 * last span export, and a second of slack. Past it the process is stuck, and the watchdog kills it.
 */
export function shutdownDeadlineMs(config: Pick<Config, 'haEnabled' | 'lockTtlMs' | 'renewIntervalMs'>): number {
  const redisCallMs = config.haEnabled ? leaseTiming(config.lockTtlMs, config.renewIntervalMs).commandTimeoutMs : 0;
  return (config.haEnabled ? LEAVE_WITHIN_MS : 0) + 2 * redisCallMs + LEADER_WORK_GRACE_MS + SPAN_FLUSH_BUDGET_MS + 1_000;
}

/*
 * Runs in a worker thread, whose event loop is its own: it fires even when the main thread is
 * stuck in synchronous code (a busy loop, a blocking write) and could never run a timer of its
 * own. It can only end the whole process with a signal, so the exit status is 137 (SIGKILL).
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
setTimeout(() => {
  try {
    writeSync(2, JSON.stringify({ level: 'error', time: new Date().toISOString(), ...workerData.fields }) + '\\n');
  } catch {
    // stderr is gone as well: kill without a word.
  }
  process.kill(workerData.pid, 'SIGKILL');
}, workerData.deadlineMs);
`;

/**
 * Kills this process (SIGKILL) unless it has exited within `deadlineMs`. Started when a stop
 * begins, not at start-up: an idle thread would cost several MiB for the process' whole life.
 */
export function armShutdownWatchdog(deadlineMs: number, instanceId: string): void {
  const fields = {
    service: 'grinder',
    instance_id: instanceId,
    deadline_ms: deadlineMs,
    msg: 'graceful stop took too long (the process is stuck); killing it with SIGKILL; a lease it still holds expires after one TTL',
  };
  const worker = new Worker(WATCHDOG_SOURCE, { eval: true, workerData: { pid: process.pid, deadlineMs, fields }, stdout: true, stderr: true });
  worker.unref();
}
