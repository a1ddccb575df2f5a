import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errMessage } from '../../src/error-text';

/** A wall clock a test or the chaos harness moves for one redis-server: build the shim, then `step()` it. */
export class ShiftedClock {
  readonly library: string;
  readonly offsetFile: string;
  private offset = 0;

  private constructor(dir: string) {
    this.library = join(dir, 'clock-shim.so');
    this.offsetFile = join(dir, 'offset');
    writeFileSync(this.offsetFile, '0\n');
  }

  /** Compiles tools/kit/clock-shim.c with cc (needs a C compiler: Debian's gcc). */
  static build(): ShiftedClock {
    const dir = mkdtempSync(join(tmpdir(), 'grinder-clock-'));
    const c = new ShiftedClock(dir);
    try {
      execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', c.library, join(__dirname, 'clock-shim.c'), '-ldl'], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`could not build the clock shim with cc (apt-get install gcc libc6-dev): ${errMessage(err)}`, {
        cause: err,
      });
    }
    return c;
  }

  /** Environment for the process whose clock this moves. */
  get env(): Record<string, string> {
    return { LD_PRELOAD: this.library, GRINDER_CLOCK_OFFSET_FILE: this.offsetFile };
  }

  /** Steps the wall clock by `seconds` (negative: back). Takes effect within 5 ms. */
  step(seconds: number): void {
    this.offset += seconds;
    writeFileSync(this.offsetFile, `${this.offset}\n`);
  }
}
