#!/usr/bin/env node
// First: the stdio and signal guards must be in place before anything can write or be signalled.
import { onIgnoredSignal } from './process-guards';
import { isCliCommand, runCli } from './cli';
import { CONFIG_EXIT_CODE, ConfigError, loadConfig, type Config } from './config';
import { liveLeaderWork } from './live/live-loop';
import { startService, StartupError } from './service';
import { readOtelConfig, type OtelConfig } from './telemetry/otel-config';
import { usage } from './usage';
import { VERSION } from './version';
import { armShutdownWatchdog, shutdownDeadlineMs } from './watchdog';
import { errMessage } from './error-text';

/** Signals that stop the replica gracefully: the lease is released first, so the next one takes over at once. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const;

function fail(message: string, code: number): never {
  process.stderr.write(`grinder: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (isCliCommand(argv)) {
    const code = await runCli(argv, {
      env: process.env,
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
    });
    process.exit(code);
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage());
    process.exit(0);
  }
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }

  let config: Config;
  let otel: OtelConfig;
  try {
    config = loadConfig(process.env, argv);
    otel = readOtelConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, CONFIG_EXIT_CODE);
    throw err;
  }

  const service = await startService(config, {
    env: process.env,
    otel,
    leaderWork: (deps) => liveLeaderWork(config, deps),
  }).catch((err: unknown) => {
    if (err instanceof ConfigError) fail(err.message, CONFIG_EXIT_CODE);
    if (err instanceof StartupError) fail(`could not start: ${err.message}`, err.exitCode);
    throw err;
  });
  const { log } = service;

  // Redis errors are handled where they happen; anything that still escapes is a bug to report,
  // not a reason to drop the lease by crashing.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled promise rejection');
  });

  onIgnoredSignal((signal) => {
    log.info({ signal }, signal === 'SIGUSR1' ? 'SIGUSR1 ignored: the Node inspector stays closed' : `${signal} ignored`);
  });

  let stopping = false;
  const onStopSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.info({ signal }, 'already stopping');
      return;
    }
    stopping = true;
    const deadlineMs = shutdownDeadlineMs(config);
    armShutdownWatchdog(deadlineMs, config.instanceId);
    log.info({ signal, deadline_ms: deadlineMs }, 'shutting down');
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'graceful shutdown failed');
        process.exit(1);
      },
    );
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onStopSignal);
}

main().catch((err: unknown) => {
  fail(`could not start: ${errMessage(err)}`, 1);
});
