import type { CliIo } from './index';

export async function runList(_args: readonly string[], io: CliIo): Promise<number> {
  io.stderr('grinder list: not implemented yet\n');
  return 1;
}
