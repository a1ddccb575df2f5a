--[[
  Extend the leader lease, only if it is still exactly ours.

  Input:
    KEYS[1] lock key
    ARGV[1] lease        the exact value our acquire wrote ("<token>|<session>|<instance id>")
    ARGV[2] TTL          new lease length in ms, counted from now

  Output:
    {1, ttl}             renewed
    {-1, value, pttl}    another session's lease is there: ours is lost
    {-2, value, pttl}    a string that is not a lease: ours is lost
    {-3, type, pttl}     another Redis type: ours is lost
    {-4, pttl}           the data-loss barrier: ours is lost
    {-5}                 the key is gone: our lease expired
]]
local lockKey = KEYS[1]
local keyType = redis.call('TYPE', lockKey)['ok']
if keyType == 'none' then
  return {-5}
end
if keyType ~= 'string' then
  return {-3, keyType, redis.call('PTTL', lockKey)}
end
local current = redis.call('GET', lockKey)
if current == ARGV[1] then
  redis.call('PEXPIRE', lockKey, ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if string.sub(current, 1, 8) == 'barrier|' then
  return {-4, redis.call('PTTL', lockKey)}
end
if string.match(current, '^%d+|%x+|.') then
  return {-1, current, redis.call('PTTL', lockKey)}
end
return {-2, current, redis.call('PTTL', lockKey)}
