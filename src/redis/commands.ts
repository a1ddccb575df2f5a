import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReplyError, type Cluster, type Redis, type Result } from 'ioredis';

/**
 * The script layer: every Lua script lives in ./scripts as `<name>-<numKeys>.lua` and is
 * registered once per connection with ioredis `defineCommand` (EVALSHA with a transparent EVAL
 * fallback). The key count comes from the file name, `-- @include <file>` lines are replaced by
 * that file, and the commands are typed here through ioredis' module augmentation. Raw replies are
 * turned into typed results in src/ha/replies.ts (lease) and src/live/fence.ts (fenced writes).
 */

export type RawReply = (string | number)[];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    grinderAcquire(
      recordKey: string,
      counterKey: string,
      fenceKey: string,
      initKey: string,
      veteransKey: string,
      session: string,
      instanceId: string,
      ttlMs: number,
      expectedVer: string,
      floor: number,
      barrierMs: number,
      newVer: string,
      channel: string,
      fresh: '1' | '',
    ): Result<RawReply, Context>;
    grinderRenew(recordKey: string, token: number, session: string, ttlMs: number, newVer: string, channel: string): Result<RawReply, Context>;
    grinderRelease(recordKey: string, token: number, session: string, newVer: string, channel: string): Result<RawReply, Context>;
    grinderReleaseSession(recordKey: string, session: string, newVer: string, channel: string): Result<RawReply, Context>;
    grinderHandoff(recordKey: string, token: number, session: string, newVer: string, successor: string, channel: string): Result<RawReply, Context>;
    grinderDeclare(recordKey: string, counterKey: string, fenceKey: string, initKey: string, windowMs: number): Result<RawReply, Context>;
    grinderFencedAppend(
      streamKey: string,
      fenceKey: string,
      counterKey: string,
      recordKey: string,
      token: number,
      maxLen: number,
      ...fields: string[]
    ): Result<RawReply, Context>;
    grinderHeartbeat(
      membersKey: string,
      memberKey: string,
      veteransKey: string,
      instanceId: string,
      ttlMs: number,
      registration: string,
      seenToken: '1' | '',
    ): Result<RawReply, Context>;
    grinderLeave(membersKey: string, memberKey: string, veteransKey: string, instanceId: string): Result<RawReply, Context>;
    grinderClusterView(recordKey: string, membersKey: string): Result<RawReply, Context>;
  }
}

/** Script file name (without the key count) → the command name it is registered as. */
const COMMAND_NAMES: Readonly<Record<string, string>> = {
  acquire: 'grinderAcquire',
  renew: 'grinderRenew',
  release: 'grinderRelease',
  'release-session': 'grinderReleaseSession',
  handoff: 'grinderHandoff',
  declare: 'grinderDeclare',
  'fenced-append': 'grinderFencedAppend',
  heartbeat: 'grinderHeartbeat',
  leave: 'grinderLeave',
  'cluster-view': 'grinderClusterView',
};

export const SCRIPTS_DIR = join(__dirname, 'scripts');

export interface ScriptSource {
  command: string;
  file: string;
  numberOfKeys: number;
  lua: string;
}

const INCLUDE = /^-- @include (\S+)\s*$/gm;

function expandIncludes(text: string, seen: ReadonlySet<string>): string {
  return text.replace(INCLUDE, (_line, file: string) => {
    if (seen.has(file)) throw new Error(`Lua include cycle through ${file}`);
    return expandIncludes(readFileSync(join(SCRIPTS_DIR, file), 'utf8'), new Set([...seen, file]));
  });
}

let cached: ScriptSource[] | null = null;

/** Every script with its includes expanded; read once per process. */
export function loadScripts(): ScriptSource[] {
  if (cached) return cached;
  const out: ScriptSource[] = [];
  for (const file of readdirSync(SCRIPTS_DIR).sort()) {
    const m = /^(.+)-(\d+)\.lua$/.exec(file);
    if (!m) continue;
    const name = m[1] as string;
    const command = COMMAND_NAMES[name];
    if (!command) throw new Error(`src/redis/scripts/${file} has no command name; add it to COMMAND_NAMES`);
    out.push({ command, file, numberOfKeys: Number(m[2]), lua: expandIncludes(readFileSync(join(SCRIPTS_DIR, file), 'utf8'), new Set()) });
  }
  cached = out;
  return out;
}

const registered = new WeakSet<Redis | Cluster>();

/** Registers every script on a connection; a second call for the same connection does nothing. */
export function defineCommands(redis: Redis | Cluster): void {
  if (registered.has(redis)) return;
  registered.add(redis);
  for (const s of loadScripts()) redis.defineCommand(s.command, { numberOfKeys: s.numberOfKeys, lua: s.lua });
}

/** Thrown when a script answers with a shape its header does not allow: a bug, not an outage. */
export class UnexpectedReplyError extends Error {
  constructor(script: string, reply: unknown) {
    super(
      `the ${script} script answered ${JSON.stringify(reply)}, which its header does not allow; is an older or newer GRINDER version sharing this lock key? Run one version per lock key.`,
    );
    this.name = 'UnexpectedReplyError';
  }
}

/**
 * Whether Redis answered a call, with an error or a reply the script should never give, as
 * opposed to not answering at all (down, a timeout): an answer means Redis is there but the
 * work cannot be done.
 */
export function redisAnswered(err: unknown): boolean {
  return err instanceof ReplyError || err instanceof UnexpectedReplyError;
}
