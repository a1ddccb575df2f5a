--[[
  Take the leader lease over from the record version the caller has watched long enough, and hand
  out a fencing token greater than every token this Redis or the caller knows of.

  The caller decides *when* a version may be taken over (it watched it stand still for the longest
  TTL on its own monotonic clock, or heard its release announced); this script only checks that the
  version is still the current one, so a renewal, release or takeover in between makes it a no-op.

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua); never expires
    KEYS[2] counter key   string integer: the newest fencing token handed out; never expires
    KEYS[3] fence key     string integer: the highest token a fenced write has accepted
    KEYS[4] init key      `grinder init`'s declaration of a brand-new cluster (expires)
    KEYS[5] veterans key  sorted set: instance id -> expiry (Redis' clock, ms) of the registered
                          members that have seen a fencing token (heartbeat-3.lua)
    ARGV[1] session       random hex naming this process incarnation
    ARGV[2] instance id
    ARGV[3] ttl           this caller's lease TTL in ms
    ARGV[4] expected ver  the version the caller may take over, or '' for none
    ARGV[5] floor         the highest token the caller has seen anywhere
    ARGV[6] barrier ms    how long a barrier this call writes must last (the longest TTL the
                          caller knows any holder used)
    ARGV[7] new ver       random hex for the version this call writes, if it writes one
    ARGV[8] channel       announcement channel
    ARGV[9] fresh         '1' when the caller may lead on a declared brand-new cluster: it has
                          seen no record and no break in its connection since it started. Used
                          only when no other live member has seen a token: one that has means a
                          leadership happened here and Redis lost it (data loss, a rollback), so
                          the declaration no longer tells the truth

  Output:
    {1, token, ver}                                   acquired (also: on a declared brand-new
                                                      cluster, by a fresh caller, without a
                                                      barrier; the declaration is used up)
    {0, state, ver, token, ttl, maxttl, instance, newest, session}
                                                      not taken: the record as it stands
    {-1, ver, ms, reason, newest}                     a barrier was written now; reason is
                                                      data_loss (record and counter missing),
                                                      record_missing, or rollback (the caller has
                                                      seen a token newer than anything here)
    {-2, ver, pttl, newest}                           the key holds a string that is not a record;
                                                      ver is its SHA1, so it can be taken over
                                                      once it has stood still long enough
    {-3, type}                                        the key holds another Redis type: never
                                                      taken over (it is somebody's data)
    {-4, newest}                                      no token up to TOKEN_LIMIT (1.5 * 2^52) is
                                                      left: at least 2^51 leaderships after the
                                                      tokens reached Redis' clock, since a stored
                                                      value above the limit counts as garbage

  Run late (after the caller gave up waiting): the compare-and-set makes it harmless. Either the
  version it expected is gone (nothing written), or it took the lease for a session that is not
  leading; that session then hands it back (release-session-1.lua) or its next acquire replaces it,
  and every other replica still waits the full TTL on the version it wrote.
]]
-- @include include/lease-record.lua

local lockKey, counterKey, fenceKey, initKey, veteransKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local session, instanceId = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local expected = ARGV[4]
-- A floor no GRINDER token can reach came from garbage a replica read before: ignore it.
local floor = tokenInt(ARGV[5]) or 0
local barrierMs = tonumber(ARGV[6])
local newVer = ARGV[7]
local channel = ARGV[8]
local fresh = ARGV[9] == '1'

local keyType = redis.call('TYPE', lockKey)['ok']
if keyType ~= 'none' and keyType ~= 'string' then
  return { -3, keyType }
end

local rawCounter = redis.call('GET', counterKey)
local counter = tokenInt(rawCounter)
local fence = tokenInt(redis.call('GET', fenceKey))
local raw = nil
if keyType == 'string' then
  raw = redis.call('GET', lockKey)
end
local rec = parseRecord(raw)

local known = math.max(counter or 0, fence or 0, (rec and rec.token) or 0)
local newest = math.max(known, floor)

local function writeBarrier(reason)
  local ms = math.max(barrierMs, ttl, (rec and rec.maxttl) or 0, (rec and rec.ttl) or 0)
  redis.call('SET', lockKey, formatRecord('barrier', newVer, newest, ms, ms, session, instanceId))
  redis.call('SET', counterKey, fmt(newest))
  -- A barrier stands now: a declaration of a brand-new cluster no longer applies.
  redis.call('DEL', initKey)
  announce(channel, 'barrier', newVer, newest, ms, instanceId)
  return { -1, newVer, ms, reason, fmt(newest) }
end

-- Whether a live member other than the caller reported a fencing token: it saw a leadership that
-- this Redis no longer knows of.
local function othersHaveLed()
  local t = redis.call('TIME')
  local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', veteransKey, string.format('%.0f', nowMs), '+inf')) do
    if id ~= instanceId then
      return true
    end
  end
  return false
end

-- Takes the lease with a fresh token; the caller checked that it may.
local function take()
  -- Redis' clock in microseconds keeps tokens ahead of every earlier one even when the counter
  -- was rolled back and nobody remembers a newer token, as long as that clock has not gone back.
  local time = redis.call('TIME')
  local nowMicros = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local token = newest + 1
  if nowMicros > token and nowMicros <= TOKEN_LIMIT then
    token = nowMicros
  end
  if token > TOKEN_LIMIT then
    return { -4, fmt(newest) }
  end
  local maxttl = ttl
  if rec and rec.state ~= 'barrier' then
    maxttl = math.max(ttl, rec.ttl)
  end
  redis.call('SET', lockKey, formatRecord('held', newVer, token, ttl, maxttl, session, instanceId))
  redis.call('SET', counterKey, fmt(token))
  redis.call('DEL', initKey)
  announce(channel, 'acquired', newVer, token, ttl, instanceId)
  return { 1, fmt(token), newVer }
end

if raw == nil then
  if rawCounter == false then
    -- Nothing of GRINDER's here. An operator declared this a brand-new cluster (grinder init), so
    -- no leader from before can exist: a caller that has seen nothing else may lead at once. A
    -- caller that saw a break or a record may be looking at lost data, and writes the barrier.
    if fresh and redis.call('GET', fenceKey) == false and redis.call('EXISTS', initKey) == 1 and not othersHaveLed() then
      return take()
    end
    return writeBarrier('data_loss')
  end
  return writeBarrier('record_missing')
end
if floor > known then
  return writeBarrier('rollback')
end

local currentVer
if rec then
  currentVer = rec.ver
else
  currentVer = redis.sha1hex(raw)
end
if expected == '' or expected ~= currentVer then
  if rec then
    return { 0, rec.state, rec.ver, fmt(rec.token), fmt(rec.ttl), fmt(rec.maxttl), rec.instance, fmt(newest), rec.session }
  end
  return { -2, currentVer, redis.call('PTTL', lockKey), fmt(newest) }
end

return take()
