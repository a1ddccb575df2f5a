// Builds dist/main.js: src/ bundled into one file by esbuild, plus the Lua scripts it reads at run
// time. One file instead of the ~400 CommonJS modules tsc + node_modules would load: module
// count, not code size, is what the resident memory of a small service like this one goes to
// (71 MiB bundled against 83 MiB unbundled on Node 24, idle; see docs/benchmarks.md). Types are
// checked by `npm run typecheck` (part of `npm test`), not here, so a build takes under a second.
//
// The OTLP trace exporters stay outside the bundle: they are required only when spans are
// exported (src/telemetry/sdk.ts), and bundling them would put gRPC and protobuf code into every
// process. They resolve from node_modules, which the image keeps (npm ci --omit=dev).
import { build } from 'esbuild';
import { chmodSync, cpSync, rmSync } from 'node:fs';

const LAZY = ['@opentelemetry/exporter-trace-otlp-proto', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/exporter-trace-otlp-grpc'];

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/main.js',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  sourcemap: true,
  external: LAZY,
  logLevel: 'warning',
});
chmodSync('dist/main.js', 0o755);

// Every module's __dirname is dist/ inside the bundle, so the script loader's `scripts/` (next to
// src/redis/commands.ts when run from source) is dist/scripts/: copy the folder, includes and all.
cpSync('src/redis/scripts', 'dist/scripts', { recursive: true, filter: (p) => !p.endsWith('.ts') });
