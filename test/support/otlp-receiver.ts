import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttp2Server, type Http2Server } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import { freePort } from '../../tools/kit/ports';

export interface OtlpRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /**
   * The payload: protobuf or JSON bytes (for gRPC, the message without its 5-byte frame),
   * decompressed when it came with `content-encoding: gzip`, as a real collector would.
   */
  body: Buffer;
  /** performance.now() of the test process when the request had fully arrived. */
  at: number;
  /** For a receiver that never answers: how long after the request arrived the exporter gave up on it. */
  heldMs?: number;
}

export interface HttpReceiverOptions {
  /** Default: a free port. */
  port?: number;
  /** false: keep every request open without an answer, a collector that hangs. Default true. */
  answer?: boolean;
}

/** One attribute of an OTLP/JSON span or resource, with its value whatever its type. */
export interface JsonAttribute {
  key: string;
  value: Record<string, unknown>;
}

export interface JsonSpan {
  name: string;
  spanId: string;
  parentSpanId?: string;
  kind: number;
  attributes: JsonAttribute[];
  droppedAttributesCount?: number;
}

/**
 * An OTLP collector in the test process: OTLP/HTTP (protobuf or JSON, on /v1/traces) or
 * OTLP/gRPC (HTTP/2 without TLS, the TraceService/Export call), answering every export with
 * success and keeping what it got.
 */
export class OtlpReceiver {
  private constructor(
    readonly url: string,
    private readonly server: Server | Http2Server,
    readonly requests: OtlpRequest[],
  ) {}

  /** Rejects with the listen error (EADDRINUSE, ...) when `port` cannot be had. */
  static async http(opts: HttpReceiverOptions = {}): Promise<OtlpReceiver> {
    const port = opts.port ?? (await freePort());
    const requests: OtlpRequest[] = [];
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        const request: OtlpRequest = { path: req.url ?? '', headers: req.headers, body, at: performance.now() };
        requests.push(request);
        if (opts.answer === false) {
          res.once('close', () => {
            request.heldMs = performance.now() - request.at;
          });
          return;
        }
        const json = String(req.headers['content-type']).includes('json');
        res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' }).end(json ? '{}' : '');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    return new OtlpReceiver(`http://127.0.0.1:${port}`, server, requests);
  }

  static async grpc(): Promise<OtlpReceiver> {
    const port = await freePort();
    const requests: OtlpRequest[] = [];
    const server = createHttp2Server();
    server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const framed = Buffer.concat(chunks);
        requests.push({ path: String(headers[':path']), headers: headers as IncomingHttpHeaders, body: framed.subarray(5), at: performance.now() });
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        // An empty ExportTraceServiceResponse: not compressed, length 0.
        stream.end(Buffer.alloc(5));
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return new OtlpReceiver(`http://127.0.0.1:${port}`, server, requests);
  }

  /** Every payload as latin1 text: span names and attribute strings appear verbatim in protobuf too. */
  text(): string {
    return this.requests.map((r) => r.body.toString('latin1')).join('\n');
  }

  /** Spans of OTLP/JSON payloads (of every request, or of the ones given). */
  jsonSpans(requests: OtlpRequest[] = this.requests): JsonSpan[] {
    return this.jsonPayloads(requests).flatMap((p) => p.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
  }

  /** Resource attributes of the first OTLP/JSON payload. */
  jsonResource(): Record<string, unknown> {
    const first = this.jsonPayloads()[0]?.resourceSpans[0];
    return attributeMap(first?.resource.attributes ?? []);
  }

  close(): Promise<void> {
    // Requests held open without an answer would otherwise keep close() waiting for ever.
    if ('closeAllConnections' in this.server) this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private jsonPayloads(
    requests: OtlpRequest[] = this.requests,
  ): { resourceSpans: { resource: { attributes: JsonAttribute[] }; scopeSpans: { spans: JsonSpan[] }[] }[] }[] {
    return requests.map((r) => JSON.parse(r.body.toString('utf8')) as ReturnType<OtlpReceiver['jsonPayloads']>[number]);
  }
}

/** key → value of OTLP/JSON attributes ({ stringValue: 'x' } → 'x', { intValue: 6379 } → 6379). */
export function attributeMap(attributes: JsonAttribute[]): Record<string, unknown> {
  return Object.fromEntries(attributes.map((a) => [a.key, Object.values(a.value)[0]]));
}
