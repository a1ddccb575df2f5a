import type { ChildProcess } from 'node:child_process';

/**
 * Child processes to kill whatever ends their parent (an error, Ctrl-C, an uncaught exception).
 * killAllNow() is synchronous so that it also works from process.on('exit').
 */
export class ChildProcesses {
  private readonly running = new Set<ChildProcess>();

  /** Keeps `proc` until it exits. */
  add(proc: ChildProcess): ChildProcess {
    this.running.add(proc);
    proc.once('exit', () => this.running.delete(proc));
    return proc;
  }

  /** SIGCONT (a paused process cannot die) then SIGKILL to every one still alive; returns how many. */
  killAllNow(): number {
    let killed = 0;
    for (const proc of this.running) {
      if (proc.exitCode !== null || proc.signalCode !== null) continue;
      try {
        proc.kill('SIGCONT');
        proc.kill('SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
    return killed;
  }
}

/** Sends `signal` and waits for the exit; a process still running `graceMs` later gets SIGKILL. */
export async function endProcess(proc: ChildProcess, signal: NodeJS.Signals, graceMs?: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(signal);
  const killer = graceMs === undefined ? undefined : setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(killer);
}
