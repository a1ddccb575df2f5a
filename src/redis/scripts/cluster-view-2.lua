--[[
  Read what the cluster view needs from the lock key's node in one step: Redis' clock, the lease
  record (parsed by the lease scripts' own parser) and the members whose registration has not
  expired. The registrations themselves are read afterwards (MGET): their keys are known only from
  this answer, and a script must name every key it touches up front. Read-only.

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua)
    KEYS[2] members key   sorted set: instance id -> expiry of its registration (Redis' clock, ms)

  Output:
    {now, state, token, ttl, instance, n, id1, expiry1, ..., idn, expiryn}
      now                 Redis' clock in ms
      state               held, free, barrier or handoff (a record); missing (no key); foreign
                          (a string that is not a record); or the other Redis type found
      token, ttl          the record's token and TTL in ms ('' when state is not a record's)
      instance            the record's instance id: the holder (held), the last holder (free), the
                          successor named (handoff), the writer (barrier); '' when not a record
      n                   how many members follow
      idN, expiryN        the members whose registration expires after now (the reader sorts them)
]]
-- @include include/lease-record.lua

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local reply = { fmt(now), 'missing', '', '', '' }
local keyType = redis.call('TYPE', KEYS[1])['ok']
if keyType == 'string' then
  local rec = parseRecord(redis.call('GET', KEYS[1]))
  if rec then
    reply = { fmt(now), rec.state, fmt(rec.token), fmt(rec.ttl), rec.instance }
  else
    reply[2] = 'foreign'
  end
elseif keyType ~= 'none' then
  reply[2] = keyType
end
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(now), '+inf', 'WITHSCORES')
reply[#reply + 1] = #members / 2
for i = 1, #members do
  reply[#reply + 1] = members[i]
end
return reply
