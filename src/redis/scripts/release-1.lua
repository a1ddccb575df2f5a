--[[
  Give the leader lease up, only if the record still names our leadership, and announce it so a
  standby takes over at once. The record stays (state free): a missing record means something
  deleted it, which the next acquire answers with a barrier.

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua)
    ARGV[1] token         our leadership's fencing token
    ARGV[2] session       our process incarnation
    ARGV[3] new ver       random hex for the free version
    ARGV[4] channel       announcement channel

  Output:
    {1, ver}              released and announced
    {0}                   not ours (taken over, or never ours): nothing changed

  Run late: the caller had already stopped leading before sending it, so freeing the lease then is
  what it asked for; if the lease moved on meanwhile, nothing is changed.
]]
-- @include include/lease-record.lua

local lockKey = KEYS[1]
local rec = heldRecord(lockKey, ARGV[2], ARGV[1])
if not rec then
  return { 0 }
end
redis.call('SET', lockKey, formatRecord('free', ARGV[3], rec.token, rec.ttl, rec.maxttl, rec.session, rec.instance))
announce(ARGV[4], 'released', ARGV[3], rec.token, rec.ttl, rec.instance)
return { 1, ARGV[3] }
