import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface Answer {
  status: number;
  body: string;
  /** performance.now() when the status line and headers had arrived. */
  at: number;
}

/**
 * One GET to 127.0.0.1:port over `agent` (keep-alive, so a tight poll does not pay a TCP handshake
 * per probe). Rejects on a connection error or after timeoutMs.
 */
export function get(agent: Agent, port: number, path: string, timeoutMs = 2_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent }, (res) => {
      const at = performance.now();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), at }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path} on port ${port} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export function keepAliveAgent(maxSockets = 1): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}

export type ReadyRole = 'active' | 'standby' | 'unknown' | 'down';

/** The role /readyz reports, or 'down' when the process does not answer. */
export async function readyRole(agent: Agent, port: number): Promise<ReadyRole> {
  try {
    const r = await get(agent, port, '/readyz', 1_000);
    const role = (JSON.parse(r.body) as { role?: unknown }).role;
    return role === 'active' || role === 'standby' || role === 'unknown' ? role : 'down';
  } catch {
    return 'down';
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls GET /readyz on `port` every `intervalMs` until it answers 200 and returns the moment
 * (performance.now()) that 200 arrived. Connection errors count as "not yet".
 */
export async function pollUntilReady(agent: Agent, port: number, timeoutMs: number, intervalMs = 2): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const r = await get(agent, port, '/readyz', 1_000);
      if (r.status === 200) return r.at;
    } catch {
      // not answering yet: keep polling
    }
    if (performance.now() > deadline) throw new Error(`port ${port} did not answer 200 on /readyz within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}
