import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { REPO_ROOT } from '../../tools/kit/replica';

export interface Diagnostic {
  /** Zero-based position in `source`; null for a diagnostic about no line (e.g. the program). */
  line: number | null;
  character: number | null;
  message: string;
}

/**
 * Type-checks a generated TypeScript source with the project's own compiler settings (so the
 * installed schema packages resolve as they do for src/), and returns its diagnostics. The file
 * goes under .tmp/ (git-ignored) because module resolution starts from where it stands.
 */
export function typeCheck(source: string, name: string): Diagnostic[] {
  const dir = join(REPO_ROOT, '.tmp');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${process.pid}.ts`);
  writeFileSync(file, source);
  try {
    const cfg = ts.getParsedCommandLineOfConfigFile(
      join(REPO_ROOT, 'tsconfig.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => {
          throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
        },
      },
    );
    if (!cfg) throw new Error('could not read tsconfig.json: run the test from the repository');
    const program = ts.createProgram([file], { ...cfg.options, rootDir: REPO_ROOT, noEmit: true, noUnusedLocals: false });
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      return { line: at?.line ?? null, character: at?.character ?? null, message: ts.flattenDiagnosticMessageText(d.messageText, '\n') };
    });
  } finally {
    rmSync(file, { force: true });
  }
}
