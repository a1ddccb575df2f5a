// tsc does not copy non-TypeScript files; the Lua scripts are read at run time from next to the
// compiled module that registers them, so they must travel into dist/.
import { chmodSync, cpSync } from 'node:fs';
for (const dir of ['redis/scripts']) {
  cpSync(`src/${dir}`, `dist/${dir}`, { recursive: true, filter: (p) => !p.endsWith('.ts') });
}
chmodSync('dist/main.js', 0o755);
