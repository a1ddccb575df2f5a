--[[
  `grinder init`: declare a brand-new cluster, so that the first acquire leads at once instead of
  writing the data-loss barrier (acquire-5.lua). Only where GRINDER has left nothing: a record,
  counter or fence means replicas led here before, and then the barrier must stand.

  Input:
    KEYS[1] lock key      the lease record
    KEYS[2] counter key   the newest fencing token handed out
    KEYS[3] fence key     the highest token a fenced write has accepted
    KEYS[4] init key      the declaration; expires after the window
    ARGV[1] window ms     how long the declaration stands if no replica uses it

  Output:
    {1}                   declared (or declared again: the window starts over)
    {0, what}             not brand-new: what is the first of record, counter, fence that exists
]]
local names = { 'record', 'counter', 'fence' }
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return { 0, names[i] }
  end
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
return { 1 }
