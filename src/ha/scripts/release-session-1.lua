--[[
  Give up whatever lease this session holds without knowing it: sent after an acquire whose reply
  timed out, which Redis may still have executed (it runs a connection's commands in order, so
  this runs right after that late acquire). Only sent while the session holds nothing it knows of.

  Input:
    KEYS[1] lock key
    ARGV[1] session      random hex naming this process incarnation
    ARGV[2] channel      pub/sub channel the standbys listen on for an immediate retry

  Output:
    1                    a lease of this session was there: deleted and announced
    0                    nothing of this session's at the key
]]
local lockKey = KEYS[1]
if redis.call('TYPE', lockKey)['ok'] ~= 'string' then
  return 0
end
local current = redis.call('GET', lockKey)
if not string.match(current, '^%d+|' .. ARGV[1] .. '|') then
  return 0
end
redis.call('DEL', lockKey)
redis.call('PUBLISH', ARGV[2], current)
return 1
