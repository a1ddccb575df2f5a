import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The package version, read once from the package.json that ships beside dist/ (and src/). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0-unknown';
  } catch {
    return '0.0.0-unknown';
  }
})();
