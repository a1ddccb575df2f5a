import type { CliIo } from './index';

export async function runInit(_args: readonly string[], io: CliIo): Promise<number> {
  io.stderr('grinder init: not implemented yet\n');
  return 1;
}
