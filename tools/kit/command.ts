import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { MAIN_JS } from './replica';

export interface CommandRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Spawn to exit, ms. */
  ms: number;
}

export interface CommandOptions {
  /** Its whole environment besides PATH, as an operator's shell would give it. */
  env?: Record<string, string>;
  /** SIGKILLed after this long. Default: no limit. */
  timeoutMs?: number;
  /**
   * 'reject' (the default): a command that cannot start or outlives timeoutMs is an error.
   * 'resolve': either is an outcome like any other (code null), for a harness that logs it and
   * goes on.
   */
  failure?: 'reject' | 'resolve';
  /** Sees the process as soon as it exists, e.g. to kill it if we exit first. */
  onSpawn?: (proc: ChildProcess) => void;
}

/** Runs a short command to its end and collects what it printed. */
export function runCommand(file: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandRun> {
  const started = performance.now();
  const rejectFailures = (opts.failure ?? 'reject') === 'reject';
  return new Promise((resolve, reject) => {
    const proc = spawn(file, args, { env: { PATH: process.env.PATH ?? '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    opts.onSpawn?.(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            proc.kill('SIGKILL');
            if (rejectFailures) reject(new Error(`${[file, ...args].join(' ')} did not exit within ${opts.timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`));
          }, opts.timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      if (rejectFailures) reject(err);
      else resolve({ code: null, stdout, stderr: `${stderr}${err.message}`, ms: performance.now() - started });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** Runs `node dist/main.js <args>` (the `grinder` bin) with only `env` (and PATH), as an operator would. */
export function runGrinder(
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
  opts: Pick<CommandOptions, 'failure' | 'onSpawn'> & { mainJs?: string } = {},
): Promise<CommandRun> {
  const { mainJs, ...rest } = opts;
  return runCommand(process.execPath, [mainJs ?? MAIN_JS, ...args], { ...rest, env, timeoutMs });
}
