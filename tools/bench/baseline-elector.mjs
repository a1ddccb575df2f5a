// The yardstick for the cost figures of `npm run bench`: the smallest program that does what a
// GRINDER replica does for /readyz — node:http and ioredis, a lease (SET NX PX, renewed by a
// compare-and-PEXPIRE script), the same /readyz and /healthz answers — and nothing else: no
// metrics, no traces, no logs, no fencing, no safety margin worth the name. Not for production.
// Run as plain JavaScript, without tsx, so that nothing but itself is in its memory.
//
// Reads the same variables as GRINDER: GRINDER_REDIS_URL, GRINDER_HA_LOCK_KEY,
// GRINDER_HA_LOCK_TTL_MS, GRINDER_HA_RENEW_INTERVAL_MS, GRINDER_METRICS_PORT, GRINDER_HTTP_HOST.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';

const env = process.env;
const key = env.GRINDER_HA_LOCK_KEY ?? 'baseline:leader:lock';
const ttlMs = Number(env.GRINDER_HA_LOCK_TTL_MS ?? 10_000);
const renewMs = Number(env.GRINDER_HA_RENEW_INTERVAL_MS ?? 3_000);
const token = randomBytes(8).toString('hex');
const RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

const redis = new Redis(env.GRINDER_REDIS_URL ?? 'redis://localhost:6379/0', {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: Math.max(50, Math.min(2_000, ttlMs / 5)),
});
redis.on('error', () => {});

let validUntil = 0;
let lastTick = performance.now();

async function tick() {
  lastTick = performance.now();
  const sentAt = lastTick;
  try {
    const held = (await redis.set(key, token, 'PX', ttlMs, 'NX')) === 'OK' || (await redis.eval(RENEW, 1, key, token, ttlMs)) === 1;
    validUntil = held ? sentAt + ttlMs * 0.99 : 0;
  } catch {
    // Redis unreachable: the lease runs out on its own.
  }
}
setInterval(tick, renewMs);
void tick();

const JSON_TYPE = 'application/json; charset=utf-8';
function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

createServer((req, res) => {
  if (req.url === '/readyz') {
    if (performance.now() < validUntil) send(res, 200, '{"ready": true, "role": "active"}');
    else send(res, 503, '{"ready": false, "role": "standby"}');
  } else if (req.url === '/healthz') {
    const healthy = performance.now() - lastTick < ttlMs;
    send(res, healthy ? 200 : 503, `{"status": "${healthy ? 'ok' : 'stuck'}", "uptime_s": ${Math.round(process.uptime() * 1000) / 1000}}`);
  } else {
    send(res, 404, '{"error": "not found"}');
  }
}).listen(Number(env.GRINDER_METRICS_PORT ?? 9090), env.GRINDER_HTTP_HOST ?? '0.0.0.0');

process.on('SIGTERM', () => process.exit(0));
