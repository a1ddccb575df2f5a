--[[
  Hand the leader lease to one named successor (a planned switchover), only if the record still
  names our leadership, and announce it so the successor takes over at once.

  The record becomes state handoff, naming the successor in its instance field and keeping our
  token, TTL and session. The successor may take it over at once (it watched the record change,
  or heard this announcement); every other replica treats it like a held lease and waits it out
  for the longest TTL, so a successor that never comes costs one TTL, not a leaderless cluster.

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua)
    ARGV[1] token         our leadership's fencing token
    ARGV[2] session       our process incarnation
    ARGV[3] new ver       random hex for the handoff version
    ARGV[4] successor     the instance id the lease goes to
    ARGV[5] channel       announcement channel

  Output:
    {1, ver}              handed over and announced; also when the record already is this very
                          handoff (our token and session, the same successor): an earlier try
                          that timed out had run, and the successor may lead already
    {0}                   not ours (taken over, or never ours): nothing changed

  Run late: the caller had stopped leading (and its work had ended) before sending it; if the
  lease moved on meanwhile, nothing is changed.
]]
-- @include include/lease-record.lua

local lockKey = KEYS[1]
local rec = heldRecord(lockKey, ARGV[2], ARGV[1])
if not rec then
  if redis.call('TYPE', lockKey)['ok'] == 'string' then
    local current = parseRecord(redis.call('GET', lockKey))
    if current and current.state == 'handoff' and current.session == ARGV[2] and current.token == tonumber(ARGV[1]) and current.instance == ARGV[4] then
      return { 1, current.ver }
    end
  end
  return { 0 }
end
redis.call('SET', lockKey, formatRecord('handoff', ARGV[3], rec.token, rec.ttl, rec.maxttl, rec.session, ARGV[4]))
announce(ARGV[5], 'handoff', ARGV[3], rec.token, rec.ttl, ARGV[4])
return { 1, ARGV[3] }
