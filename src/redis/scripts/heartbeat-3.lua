--[[
  Register (or refresh) one member of the cluster view: its registration, expiring one TTL after
  this heartbeat, and its entry in the members index. The heartbeat time is Redis' own clock, so
  every reader judges "last seen" on one clock, whatever the members' and the reader's clocks say.

  Nothing in the election reads these keys: a lost or late heartbeat only makes the view stale.
  Key expiry (which follows Redis' wall clock) is good enough for a view, unlike for the lease.

  Input:
    KEYS[1] members key   sorted set: instance id -> expiry of its registration (Redis' clock, ms)
    KEYS[2] member key    the registration: a JSON object; expires with the index entry
    KEYS[3] veterans key  sorted set: instance id -> expiry, of the members whose registration
                          says they have seen a fencing token (a leadership happened here); a
                          fresh replica must not use `grinder init`'s declaration beside one
                          (acquire-5.lua)
    ARGV[1] instance id
    ARGV[2] ttl           ms until the registration expires unless refreshed (the lock TTL)
    ARGV[3] registration  a non-empty JSON object without heartbeat_ms, which this script adds
                          first, as Redis' clock in ms (spliced in, not decoded: cjson would round
                          the 16-digit fencing token)
    ARGV[4] seen token    '1' when the member has seen a fencing token, '' when not

  Output:
    {1, now}              registered; now is the heartbeat time (Redis' clock, ms)

  Also drops the index entries of members whose registration has expired, so the index stays as
  small as the cluster. Run late: it writes what the member was when it sent it, and a later
  heartbeat or leave (on the same connection, so run after it) supersedes that.
]]

local membersKey, memberKey = KEYS[1], KEYS[2]
local instanceId = ARGV[1]
local ttl = tonumber(ARGV[2])
local registration = ARGV[3]
if not ttl or ttl < 1 or string.sub(registration, 1, 1) ~= '{' or string.sub(registration, -1) ~= '}' or #registration < 3 then
  return redis.error_reply('ERR heartbeat: the registration must be a non-empty JSON object and the TTL a positive number of ms')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local nowText = string.format('%.0f', now)

redis.call('SET', memberKey, '{"heartbeat_ms":' .. nowText .. ',' .. string.sub(registration, 2), 'PX', ttl)
redis.call('ZADD', membersKey, string.format('%.0f', now + ttl), instanceId)
redis.call('ZREMRANGEBYSCORE', membersKey, '-inf', nowText)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], string.format('%.0f', now + ttl), instanceId)
else
  redis.call('ZREM', KEYS[3], instanceId)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', nowText)
return { 1, nowText }
