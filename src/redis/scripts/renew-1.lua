--[[
  Extend the leader lease, only if the record still names our leadership (token and session).

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua)
    ARGV[1] token         our leadership's fencing token
    ARGV[2] session       our process incarnation
    ARGV[3] ttl           our lease TTL in ms
    ARGV[4] new ver       random hex for the version this renewal writes
    ARGV[5] channel       announcement channel

  Output:
    {1, ver}                                  renewed: a new version, announced, so standbys
                                              restart their wait from now
    {0, state, ver, token, instance}          not ours any more; state is held, free, barrier,
                                              missing, foreign (a string that is not a record)
                                              or the Redis type found

  Run late: it compares identity, not time, so it either extends a lease that is still ours (the
  holder only counts a renewal from when it was sent) or changes nothing.
]]
-- @include include/lease-record.lua

local lockKey = KEYS[1]
local token = tonumber(ARGV[1])
local session = ARGV[2]
local ttl = tonumber(ARGV[3])
local newVer = ARGV[4]

local keyType = redis.call('TYPE', lockKey)['ok']
if keyType == 'none' then
  return { 0, 'missing', '', '0', '' }
end
if keyType ~= 'string' then
  return { 0, keyType, '', '0', '' }
end
local rec = parseRecord(redis.call('GET', lockKey))
if not rec then
  return { 0, 'foreign', '', '0', '' }
end
if rec.state ~= 'held' or rec.token ~= token or rec.session ~= session then
  return { 0, rec.state, rec.ver, fmt(rec.token), rec.instance }
end
redis.call('SET', lockKey, formatRecord('held', newVer, rec.token, ttl, math.max(ttl, rec.maxttl), session, rec.instance))
announce(ARGV[5], 'renewed', newVer, rec.token, ttl, rec.instance)
return { 1, newVer }
