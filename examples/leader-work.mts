// Leader work on the grinder-ha library: run this on two or more machines (or twice on one), and
// exactly one of them appends to a Redis stream at a time; stop that one (Ctrl-C, SIGTERM) and
// another takes over at once. Every write is fenced: a paused ex-leader's late write is refused.
//
//   npm run build && REDIS_URL=redis://localhost:6379/0 node examples/leader-work.mts   (also LOCK_KEY, TTL_MS)
//
// (Node 24 runs TypeScript directly, .mts as an ES module; elsewhere `npm install grinder-ha` first.)
import { setTimeout as sleep } from 'node:timers/promises';
import { createElector, type LeaderWorkContext } from 'grinder-ha';

const elector = createElector({
  redisUrl: process.env.REDIS_URL ?? 'redis://localhost:6379/0',
  lockKey: process.env.LOCK_KEY ?? 'example:leader:lock',
  // A crashed leader is replaced within the TTL; a stopped one at once.
  ttlMs: Number(process.env.TTL_MS ?? 10_000),
  onRoleChange: ({ from, to }) => console.log(`${elector.instanceId}: ${from} -> ${to}`),
});

async function work(ctx: LeaderWorkContext): Promise<void> {
  // In the lock key's slot, so the same code works on Redis Cluster.
  const stream = ctx.fence.key('orders');
  console.log(`${ctx.instanceId}: leading with fencing token ${ctx.token}`);
  let n = 0;
  while (!ctx.signal.aborted) {
    try {
      const r = await ctx.fence.append(stream, { n: ++n, by: ctx.instanceId });
      if (!r.accepted) {
        // Someone newer leads: stop at once, and tell the elector why.
        ctx.resign(`a newer leadership (token ${r.newestToken}) exists`);
        return;
      }
      console.log(`${ctx.instanceId}: wrote ${r.id}`);
    } catch (err) {
      // No answer from Redis: the lease decides whether we still lead (the signal fires if not).
      console.error(`${ctx.instanceId}: write failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    await sleep(1_000, undefined, { signal: ctx.signal }).catch(() => undefined);
  }
  // Returning after the signal fired is the normal end; returning while still leading would make
  // this replica resign.
}

elector.run(work);

// stop() fires the signal, waits for work() to return, releases the lease (the next replica takes
// over at once) and closes the connections, so the process then exits by itself.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`${elector.instanceId}: ${signal}, stopping`);
    elector.stop().catch((err: unknown) => console.error('stop failed:', err));
  });
}
