// Builds dist/:
// - dist/main.js, the service (`grinder`): src/ bundled into one file by esbuild, plus the Lua
//   scripts it reads at run time. One file instead of the ~400 CommonJS modules tsc +
//   node_modules would load: module count, not code size, is what the resident memory of a small
//   service like this one goes to (71 MiB bundled against 83 MiB unbundled on Node 24, idle; see
//   docs/benchmarks.md).
// - dist/index.js, the library (`require('grinder-ha')`): src/index.ts bundled with its
//   dependencies left to node_modules, where npm installs them for the application that uses it
//   (bundling them would give it a second ioredis and pino beside its own).
// - dist/types/, the library's type declarations, emitted by the TypeScript compiler.
// Types are checked by `npm run typecheck` (part of `npm test`), not here: the declarations need
// only the files the library reaches, so a build stays at a few seconds.
//
// The OTLP trace exporters stay outside the service bundle: they are required only when spans are
// exported (src/telemetry/sdk.ts), and bundling them would put gRPC and protobuf code into every
// process. They resolve from node_modules, which the image keeps (npm ci --omit=dev).
import { build } from 'esbuild';
import { chmodSync, cpSync, rmSync } from 'node:fs';
import ts from 'typescript';

const LAZY = ['@opentelemetry/exporter-trace-otlp-proto', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/exporter-trace-otlp-grpc'];
const COMMON = { bundle: true, platform: 'node', target: 'node24', format: 'cjs', sourcemap: true, logLevel: 'warning' };

rmSync('dist', { recursive: true, force: true });
await Promise.all([
  build({ ...COMMON, entryPoints: ['src/main.ts'], outfile: 'dist/main.js', external: LAZY }),
  build({ ...COMMON, entryPoints: ['src/index.ts'], outfile: 'dist/index.js', packages: 'external' }),
]);
chmodSync('dist/main.js', 0o755);

// Every module's __dirname is dist/ inside either bundle, so the script loader's `scripts/` (next
// to src/redis/commands.ts when run from source) is dist/scripts/: copy the folder, includes and all.
cpSync('src/redis/scripts', 'dist/scripts', { recursive: true, filter: (p) => !p.endsWith('.ts') });

// The options are written out rather than read from tsconfig.json: the image's build stage copies
// only package*.json, this script and src/. They match tsconfig.json where it matters for
// declarations (module resolution, strictness); emit diagnostics only, so that a type error
// elsewhere in src/ is left to the type check rather than stopping every build.
const program = ts.createProgram(['src/index.ts'], {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.Node16,
  moduleResolution: ts.ModuleResolutionKind.Node16,
  lib: ['lib.es2022.d.ts'],
  types: ['node'],
  strict: true,
  esModuleInterop: true,
  skipLibCheck: true,
  rootDir: 'src',
  declaration: true,
  emitDeclarationOnly: true,
  declarationDir: 'dist/types',
});
const emitted = program.emit(undefined, undefined, undefined, true);
if (emitted.diagnostics.length > 0) {
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(emitted.diagnostics, host));
  process.stderr.write('build: the library type declarations (dist/types) could not be emitted; fix the errors above\n');
  process.exit(1);
}
