--[[
  Shared by the lease scripts: the lease record stored at the lock key, and safe integers.

  The record is a plain string that never expires (no PX): a Redis key expiry follows Redis' wall
  clock and can be evicted early, so nothing in the election depends on it. Observers judge how
  long a record version has stood still on their own monotonic clocks.

    2|<state>|<ver>|<token>|<ttl>|<maxttl>|<session>|<instance id>

  state     held (a leadership), free (released by its holder), barrier (nobody may lead yet),
            handoff (released by its holder to one named successor: a planned switchover)
  ver       random hex written with every change; observers compare versions, acquire compares
            the version the caller watched (compare-and-set)
  token     the leadership's fencing token (held, free) or the newest token known (barrier)
  ttl       the holder's lease TTL in ms (held, free) or the barrier's length in ms
  maxttl    the largest TTL among this and the previous holder, so a later barrier covers both
  session   random hex naming the holder's process incarnation (may be empty for a barrier)
  instance  the holder's instance id; for handoff, the successor's
]]
local MAX_SAFE = 9007199254740991
-- Fencing tokens start from Redis' clock in microseconds (about 1.8e15 in 2026; 2^52 in 2112) and
-- go up by one per leadership. A stored token above TOKEN_LIMIT (1.5 * 2^52) was not handed out
-- by GRINDER: it is garbage that, taken at its word, would leave no token below 2^53 to hand out
-- and stop every election. Such a value counts as absent (and is overwritten), like garbage.
local TOKEN_LIMIT = 6755399441055744

-- A decimal string that a double (and a JavaScript number) holds exactly, else nil.
local function safeInt(s)
  if type(s) ~= 'string' or #s > 16 or not string.match(s, '^%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n > MAX_SAFE then
    return nil
  end
  return n
end

-- A fencing token GRINDER can have handed out (a counter, fence or record token), else nil.
local function tokenInt(s)
  local n = safeInt(s)
  if n and n > TOKEN_LIMIT then
    return nil
  end
  return n
end

local function fmt(n)
  return string.format('%.0f', n)
end

local function parseRecord(v)
  if type(v) ~= 'string' then
    return nil
  end
  local state, ver, token, ttl, maxttl, session, instance =
    string.match(v, '^2|(%l+)|(%x+)|(%d+)|(%d+)|(%d+)|(%x*)|(.*)$')
  if state ~= 'held' and state ~= 'free' and state ~= 'barrier' and state ~= 'handoff' then
    return nil
  end
  token, ttl, maxttl = tokenInt(token), safeInt(ttl), safeInt(maxttl)
  if not token or not ttl or not maxttl then
    return nil
  end
  return { state = state, ver = ver, token = token, ttl = ttl, maxttl = maxttl, session = session, instance = instance }
end

local function formatRecord(state, ver, token, ttl, maxttl, session, instance)
  return '2|' .. state .. '|' .. ver .. '|' .. fmt(token) .. '|' .. fmt(ttl) .. '|' .. fmt(maxttl) .. '|' .. session .. '|' .. instance
end

-- The record at lockKey when it is held by the caller's process incarnation (session) and, when a
-- token is given, by that leadership; nil otherwise. Release, handoff and abandon change only that.
local function heldRecord(lockKey, session, token)
  if redis.call('TYPE', lockKey)['ok'] ~= 'string' then
    return nil
  end
  local rec = parseRecord(redis.call('GET', lockKey))
  if not rec or rec.state ~= 'held' or rec.session ~= session or (token ~= nil and rec.token ~= tonumber(token)) then
    return nil
  end
  return rec
end

-- Announcements are hints for a prompt retry; the record stays the only source of truth.
local function announce(channel, event, ver, token, ttl, instance)
  redis.call('PUBLISH', channel, event .. '|' .. ver .. '|' .. fmt(token) .. '|' .. fmt(ttl) .. '|' .. instance)
end
