#!/usr/bin/env node
import { CONFIG_EXIT_CODE, ConfigError, loadConfig, type Config } from './config';
import { startService } from './service';
import { liveLeaderWork } from './live/live-loop';

/** How long a graceful stop may take before the process exits anyway. */
const SHUTDOWN_DEADLINE_MS = 5_000;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`grinder: ${err.message}\n`);
      process.exit(CONFIG_EXIT_CODE);
    }
    throw err;
  }

  const service = await startService(config, {
    env: process.env,
    leaderWork: (deps) => liveLeaderWork(config, deps),
  });
  const { log } = service;

  // Redis errors are handled where they happen; anything that still escapes is a bug to report,
  // not a reason to drop the lease by crashing.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason instanceof Error ? reason.message : String(reason) }, 'unhandled promise rejection');
  });

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) return;
    signalled = true;
    log.info({ signal }, 'shutting down');
    setTimeout(() => {
      log.error({ deadline_ms: SHUTDOWN_DEADLINE_MS }, 'graceful shutdown took too long; exiting anyway');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'graceful shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((err: unknown) => {
  process.stderr.write(`grinder: could not start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
