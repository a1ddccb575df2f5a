/**
 * `grinder <command>`: the operator commands, next to the service itself (`grinder` with no
 * command). Each command reads the same GRINDER_* environment as the replicas, so an operator
 * runs it with the replicas' settings (`docker exec grinder_live_1 grinder list`).
 */
import { runInit } from './init';
import { runList } from './list';
import { runSwitchover } from './switchover';

export interface CliIo {
  env: Record<string, string | undefined>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** A command's outcome: the process exit code (0 done, 1 refused or failed, 2 bad usage or configuration). */
export type CliCommand = (args: readonly string[], io: CliIo) => Promise<number>;

export const COMMANDS: Readonly<Record<string, { run: CliCommand; summary: string }>> = {
  list: { run: runList, summary: 'show every replica of the cluster: role, token, lease left, last seen, health, version (--json)' },
  switchover: { run: runSwitchover, summary: 'move leadership to a healthy STANDBY (--to ID), with no overlap' },
  init: { run: runInit, summary: 'declare a brand-new cluster, so the first leader is elected at once' },
};

/** Whether argv names an operator command rather than options of the service. */
export function isCliCommand(argv: readonly string[]): boolean {
  const first = argv[0];
  return first !== undefined && Object.hasOwn(COMMANDS, first);
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const name = argv[0] as string;
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`grinder: unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  return command.run(argv.slice(1), io);
}
