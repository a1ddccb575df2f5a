--[[
  Give up whatever leadership this session holds without knowing it: sent after an acquire whose
  reply timed out, which Redis may still have executed (it runs a connection's commands in order,
  so this runs right after that late acquire). Only sent while the session holds nothing it knows of.

  Input:
    KEYS[1] lock key      the lease record (include/lease-record.lua)
    ARGV[1] session       our process incarnation
    ARGV[2] new ver       random hex for the free version
    ARGV[3] channel       announcement channel

  Output:
    {1, ver}              a leadership of this session was there: freed and announced
    {0}                   nothing of this session's at the key

  Run late: it frees only a leadership of this session, which is not leading.
]]
-- @include include/lease-record.lua

local lockKey = KEYS[1]
local rec = heldRecord(lockKey, ARGV[1], nil)
if not rec then
  return { 0 }
end
redis.call('SET', lockKey, formatRecord('free', ARGV[2], rec.token, rec.ttl, rec.maxttl, rec.session, rec.instance))
announce(ARGV[3], 'released', ARGV[2], rec.token, rec.ttl, rec.instance)
return { 1, ARGV[2] }
