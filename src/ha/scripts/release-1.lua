--[[
  Give the leader lease up, only if it is still exactly ours, and say so to the standbys.

  Input:
    KEYS[1] lock key
    ARGV[1] lease        the exact value our acquire wrote
    ARGV[2] channel      pub/sub channel the standbys listen on for an immediate retry

  Output:
    1                    released and announced
    0                    not ours (expired or taken over): nothing deleted
]]
local lockKey = KEYS[1]
if redis.call('TYPE', lockKey)['ok'] ~= 'string' then
  return 0
end
if redis.call('GET', lockKey) ~= ARGV[1] then
  return 0
end
redis.call('DEL', lockKey)
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
