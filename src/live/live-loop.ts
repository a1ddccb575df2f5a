import { redisAnswered } from '../redis/commands';
import type { Config } from '../config';
import { systemClock } from '../ha/clock';
import type { LeaderWorkContext } from '../library/types';
import type { LeaderWorkDeps, LeaderWorkPlugin } from '../work';

/**
 * The built-in live work: while ACTIVE, append one record (token, instance, sequence, times) to a
 * Redis stream every interval through the fence handle of its run(work) context, as any leader
 * work would. It makes leadership observable (who wrote, with which token, with what gaps) and
 * proves the fencing: a rejected write means a newer leader exists, so this replica steps down at
 * once. A leader whose writes keep failing steps down too
 * (after `maxConsecutiveFailures`), rather than answering ACTIVE while doing nothing.
 */
export function liveLeaderWork(config: Config, deps: LeaderWorkDeps): LeaderWorkPlugin | null {
  if (!config.haEnabled || !config.live.enabled) return null;
  const { maxConsecutiveFailures, streamKey, streamMaxLen } = config.live;
  let lastAcceptedAt: number | null = null;
  let seq = 0;

  const work = async (ctx: LeaderWorkContext): Promise<void> => {
    let failures = 0;
    while (!ctx.signal.aborted) {
      if (!ctx.isLeader()) return;
      seq += 1;
      try {
        const r = await ctx.fence.append(
          streamKey,
          {
            instance: ctx.instanceId,
            seq,
            mono_ms: systemClock.now().toFixed(3),
            wall_ms: Date.now(),
          },
          { maxLen: streamMaxLen },
        );
        if (r.accepted) {
          failures = 0;
          lastAcceptedAt = systemClock.now();
          deps.instruments.liveWrite('accepted');
        } else {
          deps.instruments.liveWrite('rejected');
          deps.log.warn({ token: ctx.token, newest_token: r.newestToken }, 'fenced live write rejected: a newer leadership exists; stepping down');
          ctx.resign(`fenced write rejected (token ${ctx.token} < ${r.newestToken})`);
          return;
        }
      } catch (err) {
        if (ctx.signal.aborted) return;
        deps.instruments.liveWrite('failed');
        // Redis answered with an error: the lease may be fine while the work cannot be done, so
        // a streak of these ends the leadership. No answer at all (Redis down, a timeout) is the
        // lease's business: the elector steps down at the deadline if renewals fail too.
        const answered = redisAnswered(err);
        if (answered) failures += 1;
        deps.log.warn(
          { err, token: ctx.token, redis_answered: answered, consecutive_failures: failures, limit: maxConsecutiveFailures },
          'fenced live write failed',
        );
        if (failures >= maxConsecutiveFailures) {
          ctx.resign(`${failures} consecutive live writes failed`);
          return;
        }
      }
      await abortableSleep(config.live.intervalMs, ctx.signal);
    }
  };

  return {
    work,
    stats: {
      lastAcceptedAgeSeconds: () => (lastAcceptedAt === null ? null : (systemClock.now() - lastAcceptedAt) / 1000),
    },
  };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
