import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { ChaosProxy } from '../../tools/kit/proxy';
import { RedisServer } from '../../tools/kit/redis';
import { sleep, waitFor } from '../../tools/kit/time';

/*
 * The chaos harness' TCP proxy, with real sockets: an echo server, and a real redis-server driven
 * through ioredis with the same no-queue, bounded-timeout settings the replicas use.
 */

let echo: Server;
let echoPort: number;
const proxies: ChaosProxy[] = [];
const sockets = new Set<Socket>();
let redis: RedisServer;

before(async () => {
  echo = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  echoPort = await new Promise<number>((resolve) =>
    echo.listen(0, '127.0.0.1', () => {
      const a = echo.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    }),
  );
  redis = await RedisServer.start();
});

after(async () => {
  for (const p of proxies) await p.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  await redis.cleanup();
});

async function proxyTo(port: number): Promise<ChaosProxy> {
  const p = await ChaosProxy.start({ targetPort: port });
  proxies.push(p);
  return p;
}

/** A client connection that collects what it receives and how it ended. */
class Client {
  readonly sock: Socket;
  received = Buffer.alloc(0);
  ended = false;
  error: string | null = null;
  closed: Promise<void>;
  constructor(port: number) {
    this.sock = connect({ host: '127.0.0.1', port });
    this.sock.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
    });
    this.sock.on('end', () => {
      this.ended = true;
    });
    this.sock.on('error', (e: NodeJS.ErrnoException) => {
      this.error = e.code ?? e.message;
    });
    this.closed = new Promise((resolve) => this.sock.on('close', () => resolve()));
  }
  async connected(): Promise<void> {
    if (!this.sock.connecting) return;
    await new Promise<void>((resolve, reject) => {
      this.sock.once('connect', () => resolve());
      this.sock.once('error', reject);
    });
  }
  async waitFor(n: number, timeoutMs = 3_000): Promise<string> {
    await waitFor(`${n} bytes back`, () => (this.received.length >= n ? true : undefined), timeoutMs, 2);
    return this.received.toString();
  }
}

describe('chaos TCP proxy', () => {
  it('passes bytes both ways unchanged, a megabyte included, and a FIN through', async () => {
    const p = await proxyTo(echoPort);
    const c = new Client(p.port);
    await c.connected();
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    c.sock.write(big);
    await waitFor('1 MiB echoed', () => (c.received.length >= big.length ? true : undefined), 10_000, 5);
    assert.ok(c.received.equals(big));
    c.sock.end();
    await c.closed;
    assert.equal(c.ended, true, 'the echo server ended its side, through the proxy');
    assert.equal(c.error, null);
    await waitFor('the proxy to forget the connection', () => (p.stats.open === 0 ? true : undefined), 2_000);
  });

  it('adds the latency in each direction: a round trip takes at least twice the latency', async () => {
    const p = await proxyTo(echoPort);
    p.setLatency(60);
    const c = new Client(p.port);
    await c.connected();
    const t0 = performance.now();
    c.sock.write('ping');
    await c.waitFor(4);
    const rtt = performance.now() - t0;
    assert.ok(rtt >= 120, `round trip ${rtt.toFixed(1)} ms with 60 ms each way`);
    assert.ok(rtt < 1_000, `round trip ${rtt.toFixed(1)} ms is far more than the latency`);
    p.setLatency(0);
    const t1 = performance.now();
    c.sock.write('pong');
    await c.waitFor(8);
    // Under the 120 ms that 60 ms each way would take, with room for a busy machine.
    assert.ok(performance.now() - t1 < 120, 'latency 0 again: no delay');
    c.sock.destroy();
  });

  it('keeps the order of chunks, even when the latency drops while chunks are queued', async () => {
    const p = await proxyTo(echoPort);
    p.setLatency(80);
    const c = new Client(p.port);
    await c.connected();
    let expected = '';
    for (let i = 0; i < 50; i++) {
      const chunk = `<${i}>`;
      expected += chunk;
      c.sock.write(chunk);
      if (i === 25) p.setLatency(0); // later chunks are due sooner, but must not overtake
      await sleep(1);
    }
    assert.equal(await c.waitFor(expected.length), expected);
    c.sock.destroy();
  });

  it('cut: open connections are reset, new ones refused until heal, then traffic flows again', async () => {
    const p = await proxyTo(echoPort);
    const c = new Client(p.port);
    await c.connected();
    c.sock.write('before');
    await c.waitFor(6);
    p.cut();
    assert.equal(p.mode, 'cut');
    await c.closed;
    assert.equal(c.error, 'ECONNRESET', 'the open connection was reset');

    const refused = new Client(p.port);
    refused.sock.write('lost');
    await refused.closed;
    assert.equal(refused.received.length, 0, 'nothing gets through while cut');
    assert.ok(refused.error !== null || refused.ended, 'the new connection is dropped');
    assert.ok(p.stats.reset >= 2);

    p.heal();
    const again = new Client(p.port);
    await again.connected();
    again.sock.write('after');
    assert.equal(await again.waitFor(5), 'after');
    again.sock.destroy();
  });

  it('partition: bytes (and new connections) are held, then delivered in order on heal', async () => {
    const p = await proxyTo(echoPort);
    const c = new Client(p.port);
    await c.connected();
    p.partition();
    c.sock.write('one,');
    c.sock.write('two,');
    const late = new Client(p.port); // its connect to the server is held too
    late.sock.write('new');
    await sleep(200);
    assert.equal(c.received.length, 0, 'nothing delivered while partitioned');
    assert.equal(late.received.length, 0);
    c.sock.write('three');
    p.heal();
    assert.equal(await c.waitFor('one,two,three'.length), 'one,two,three');
    assert.equal(await late.waitFor(3), 'new');
    c.sock.destroy();
    late.sock.destroy();
  });

  it('a real Redis through the proxy: commands work, a cut fails them at once, heal reconnects', async () => {
    const p = await proxyTo(redis.port);
    const client = new Redis(`redis://127.0.0.1:${p.port}/0`, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 1_000,
      retryStrategy: () => 50,
    });
    client.on('error', () => undefined);
    try {
      await waitFor('ioredis ready', () => (client.status === 'ready' ? true : undefined), 5_000);
      assert.equal(await client.set('k', 'v'), 'OK');
      assert.equal(await client.get('k'), 'v');

      // Latencies far from the 1 s timeout on either side: a busy machine adds delay of its own.
      p.setLatency(100);
      const t0 = performance.now();
      assert.equal(await client.get('k'), 'v', 'a 200 ms round trip is inside the 1 s timeout');
      assert.ok(performance.now() - t0 >= 200);
      p.setLatency(800);
      await assert.rejects(client.get('k'), /timed out/i, 'a 1.6 s round trip is not');
      p.setLatency(0);
      await sleep(1_200); // the late reply still arrives, in order, and is matched to the timed-out command
      assert.equal(await client.get('k'), 'v');

      p.cut();
      await waitFor('ioredis to notice the cut', () => (client.status !== 'ready' ? true : undefined), 2_000);
      await assert.rejects(client.get('k'));
      await sleep(200);
      assert.notEqual(client.status, 'ready', 'reconnects are refused while cut');
      p.heal();
      await waitFor('ioredis to reconnect after heal', () => (client.status === 'ready' ? true : undefined), 5_000);
      assert.equal(await client.get('k'), 'v');
    } finally {
      client.disconnect();
    }
  });
});
