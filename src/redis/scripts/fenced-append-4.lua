--[[
  Append an entry to a stream only if the writer's fencing token is current: not lower than any
  token a fenced write has accepted, than the newest token handed out, or than the token the lease
  record names. A leader that lost its lease without knowing it (paused, partitioned, slow network)
  cannot write once its successor exists, even before the successor's first write.

  Input:
    KEYS[1] stream key
    KEYS[2] fence key     string integer: the highest token accepted (shared by every fenced
                          write of this lock)
    KEYS[3] counter key   string integer: the newest token handed out; may be absent or corrupt
    KEYS[4] lock key      the lease record (include/lease-record.lua); may be absent
    ARGV[1] token         the writer's fencing token
    ARGV[2] maxlen        approximate cap on the stream length (XADD MAXLEN ~)
    ARGV[3..]             field, value, field, value, ... (the entry; "token" is added first)

  Output:
    {1, id}               accepted; id is the stream entry id
    {-1, newest}          rejected: a newer leadership (token newest, a decimal string) exists

  A value that is not a safe integer, or above any token GRINDER hands out (TOKEN_LIMIT), counts
  as absent: a corrupt counter or fence must not stop every write (the next acquire repairs the
  counter, this script the fence), and the others still hold the newest token.
  Run late: a late write is judged by the tokens current when it runs, which is the point.
]]
-- @include include/lease-record.lua

local token = tonumber(ARGV[1])
local fence = tokenInt(redis.call('GET', KEYS[2]))
local counter = tokenInt(redis.call('GET', KEYS[3]))
local rec = nil
if redis.call('TYPE', KEYS[4])['ok'] == 'string' then
  rec = parseRecord(redis.call('GET', KEYS[4]))
end
local newest = math.max(fence or 0, counter or 0, (rec and rec.token) or 0)
if token < newest then
  return { -1, fmt(newest) }
end
if fence == nil or token > fence then
  redis.call('SET', KEYS[2], ARGV[1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'token', ARGV[1], unpack(ARGV, 3))
return { 1, id }
