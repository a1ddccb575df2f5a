--[[
  Take the leader lease if nobody holds it, and hand out a new fencing token.

  Input:
    KEYS[1] lock key     string "<token>|<session>|<instance id>" with a PX expiry,
                         or "barrier|<seed>" while the data-loss barrier is in force
    KEYS[2] counter key  string integer: the last fencing token handed out; never expires.
                         Seeded from the server clock in microseconds (16 digits, exact in a
                         double and in a JavaScript number until the year 2255)

    ARGV[1] session      random hex naming this process incarnation
    ARGV[2] instance id
    ARGV[3] TTL          lease length in ms

  Output:
    {1, token, ttl}           acquired; token (a decimal string) is greater than every token
                              handed out before
    {-1, value, pttl}         held by another session
    {-2, value, pttl}         the key holds a string that is not a lease: treated as held
    {-3, type, pttl}          the key holds another Redis type: treated as held
    {-4, pttl}                data-loss barrier: the counter was missing, so a leader from before
                              the loss may still be acting; nobody leads until pttl has passed
]]
local lockKey = KEYS[1]
local counterKey = KEYS[2]
local session = ARGV[1]
local instanceId = ARGV[2]
local ttl = tonumber(ARGV[3])

local keyType = redis.call('TYPE', lockKey)['ok']
if keyType ~= 'none' and keyType ~= 'string' then
  return {-3, keyType, redis.call('PTTL', lockKey)}
end

if keyType == 'string' then
  local current = redis.call('GET', lockKey)
  if string.sub(current, 1, 8) == 'barrier|' then
    return {-4, redis.call('PTTL', lockKey)}
  end
  local token, holderSession = string.match(current, '^(%d+)|(%x+)|.')
  if not token then
    return {-2, current, redis.call('PTTL', lockKey)}
  end
  if holderSession ~= session then
    return {-1, current, redis.call('PTTL', lockKey)}
  end
  -- Our own session's leftover: a lease this process already stepped down from, or an acquire
  -- whose reply never reached it. Replacing it with a new leadership and a new token is safe.
end

if redis.call('EXISTS', counterKey) == 0 then
  -- Seeding from the server clock in microseconds keeps tokens increasing across a restart that
  -- lost all data: tokens grow by one per leadership, and every leadership costs at least one
  -- script run on this single-threaded server, which takes longer than a microsecond.
  -- (string.format: Lua would print a 16-digit number as 1.79e+15.)
  local now = redis.call('TIME')
  local seed = string.format('%.0f', tonumber(now[1]) * 1000000 + tonumber(now[2]))
  redis.call('SET', counterKey, seed)
  redis.call('SET', lockKey, 'barrier|' .. seed, 'PX', ttl)
  return {-4, ttl}
end

local token = string.format('%.0f', redis.call('INCR', counterKey))
redis.call('SET', lockKey, token .. '|' .. session .. '|' .. instanceId, 'PX', ttl)
return {1, token, ttl}
