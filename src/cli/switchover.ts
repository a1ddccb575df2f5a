import type { CliIo } from './index';

export async function runSwitchover(_args: readonly string[], io: CliIo): Promise<number> {
  io.stderr('grinder switchover: not implemented yet\n');
  return 1;
}
