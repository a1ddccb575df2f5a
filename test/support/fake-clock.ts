import type { Clock, TimerHandle } from '../../src/ha/clock';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  owner: ProcessClock;
}

/**
 * Hand-driven time shared by several simulated processes. Each process gets its own view
 * (`forProcess`) so one can be "paused" (SIGSTOP): its timers do not fire while time moves on,
 * and fire, overdue, when it resumes — exactly what a stopped Node process sees.
 */
export class FakeTime {
  private t = 1_000;
  private seq = 0;
  private timers: Timer[] = [];

  now(): number {
    return this.t;
  }

  forProcess(): ProcessClock {
    return new ProcessClock(this);
  }

  /** @internal */
  add(timer: Omit<Timer, 'seq'>): Timer {
    const full = { ...timer, seq: this.seq++ };
    this.timers.push(full);
    return full;
  }

  /** @internal */
  remove(timer: Timer): void {
    this.timers = this.timers.filter((t) => t !== timer);
  }

  /** Moves time forward by `ms`, firing due timers of running processes in order, and lets promises settle. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((t) => t.at <= target && !t.owner.paused).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.remove(due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = target;
    await settle();
  }

  /** Advances in small steps, calling `check` after each one. */
  async advanceChecking(ms: number, step: number, check: () => void): Promise<void> {
    for (let done = 0; done < ms; done += step) {
      await this.advance(Math.min(step, ms - done));
      check();
    }
  }
}

export class ProcessClock implements Clock {
  paused = false;
  /** Added to the wall clock only: a host suspend (wall time moves on, monotonic does not) or a step. */
  wallOffsetMs = 0;
  constructor(private readonly time: FakeTime) {}

  now(): number {
    return this.time.now();
  }

  wallNow(): number {
    return 1_800_000_000_000 + this.time.now() + this.wallOffsetMs;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return { id: this.time.add({ at: this.time.now() + Math.max(0, ms), fn, owner: this }) };
  }

  clearTimeout(handle: TimerHandle): void {
    this.time.remove(handle.id as Timer);
  }
}

/**
 * Lets every queued promise continuation run, chains of awaits of any length included: Node
 * empties the whole microtask queue before it runs an immediate (and again after each one). Not
 * rounds of `await Promise.resolve()`: under node:test each promise costs an async-hook entry
 * and a GC-tracked destroy, which made tests that advance 1 ms at a time take seconds.
 */
export async function settle(): Promise<void> {
  await new Promise<void>((r) => setImmediate(r));
}
