import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { sleep } from './time';

export interface HttpAnswer {
  status: number;
  body: string;
  contentType: string | null;
  /** performance.now() when the status line and headers had arrived. */
  at: number;
}

export interface GetOptions {
  /** The whole request, from connecting to the last byte of the body. Default 2 s. */
  timeoutMs?: number;
  /**
   * A keep-alive agent, so that a tight poll does not pay a TCP handshake per probe. Without one,
   * every request has a connection of its own, closed after it.
   */
  agent?: Agent;
}

/** One GET to 127.0.0.1:port. Rejects on a connection error or after timeoutMs. */
export function httpGet(port: number, path: string, opts: GetOptions = {}): Promise<HttpAnswer> {
  const timeoutMs = opts.timeoutMs ?? 2_000;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: opts.agent ?? false }, (res) => {
      const at = performance.now();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), contentType: res.headers['content-type'] ?? null, at });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`GET ${path} on port ${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

export function keepAliveAgent(maxSockets = 1): Agent {
  return new Agent({ keepAlive: true, maxSockets });
}

/** The role /readyz reports ('active', 'standby', 'unknown'), or 'down' when the process does not answer with one. */
export async function readyRole(port: number, opts: GetOptions = {}): Promise<string> {
  try {
    const r = await httpGet(port, '/readyz', opts);
    const role = (JSON.parse(r.body) as { role?: unknown }).role;
    return typeof role === 'string' ? role : 'down';
  } catch {
    return 'down';
  }
}

/**
 * Polls GET /readyz on `port` every `intervalMs` until it answers 200 and returns the moment
 * (performance.now()) that 200 arrived. Connection errors count as "not yet".
 */
export async function pollUntilReady(port: number, timeoutMs: number, opts: { agent?: Agent; intervalMs?: number } = {}): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const r = await httpGet(port, '/readyz', { agent: opts.agent, timeoutMs: 1_000 });
      if (r.status === 200) return r.at;
    } catch {
      // not answering yet: keep polling
    }
    if (performance.now() > deadline) throw new Error(`port ${port} did not answer 200 on /readyz within ${timeoutMs} ms`);
    await sleep(opts.intervalMs ?? 2);
  }
}
