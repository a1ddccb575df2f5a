import { connect, type Socket } from 'node:net';

/**
 * A minimal HTTP/1.1 keep-alive client for the load generator: one request at a time on one TCP
 * connection, the request bytes prepared once, the response framed by Content-Length or chunked
 * encoding and otherwise not parsed. Node's http client costs several times more CPU per request,
 * and on a 2-core machine every cycle the load generator burns is a cycle the replica under test
 * does not get.
 */
export class RawHttpConnection {
  private readonly host: string;
  private readonly port: number;
  private readonly requestBytes: Buffer;
  private sock: Socket | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private pending: { resolve: (status: number) => void; reject: (err: Error) => void } | null = null;

  constructor(host: string, port: number, path: string) {
    this.host = host;
    this.port = port;
    this.requestBytes = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: keep-alive\r\n\r\n`, 'latin1');
  }

  /** Sends one GET and resolves with the status code once the whole response has arrived. */
  get(): Promise<number> {
    if (this.pending) return Promise.reject(new Error('one request at a time'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket().write(this.requestBytes);
    });
  }

  close(): void {
    const sock = this.sock;
    sock?.destroy(new Error('connection closed by the load generator'));
  }

  private socket(): Socket {
    if (this.sock) return this.sock;
    const sock = connect({ host: this.host, port: this.port, noDelay: true });
    this.buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      if (this.sock !== sock) return;
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.tryComplete();
    });
    const fail = (err: Error): void => {
      // A late event from a socket already replaced must not fail the next connection's request.
      if (this.sock !== sock) return;
      this.sock = null;
      const p = this.pending;
      this.pending = null;
      p?.reject(err);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('connection closed')));
    this.sock = sock;
    return sock;
  }

  private tryComplete(): void {
    const length = responseLength(this.buf);
    if (length === null) return;
    const status = Number(this.buf.toString('latin1', 9, 12));
    this.buf = this.buf.subarray(length);
    const p = this.pending;
    this.pending = null;
    p?.resolve(status);
  }
}

/**
 * The byte length of the complete HTTP response at the start of `buf`, or null while it is still
 * incomplete. Exported for tests of the framing.
 */
export function responseLength(buf: Buffer): number | null {
  const headerEnd = buf.indexOf('\r\n\r\n');
  if (headerEnd < 0) return null;
  const head = buf.toString('latin1', 0, headerEnd);
  const bodyStart = headerEnd + 4;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) {
    const total = bodyStart + Number(cl[1]);
    return buf.length >= total ? total : null;
  }
  if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    let at = bodyStart;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
      if (Number.isNaN(size)) throw new Error('malformed chunk size');
      if (size === 0) {
        // Optional trailers, then an empty line.
        const end = buf.indexOf('\r\n\r\n', lineEnd);
        return end < 0 ? null : end + 4;
      }
      at = lineEnd + 2 + size + 2;
      if (buf.length < at) return null;
    }
  }
  // No body framing: only bodiless answers are expected here (204, 304).
  return bodyStart;
}
