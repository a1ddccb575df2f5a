--[[
  Take one member out of the cluster view at once (a graceful stop), instead of letting its
  registration expire one TTL later.

  Input:
    KEYS[1] members key   sorted set: instance id -> expiry of its registration
    KEYS[2] member key    the registration
    KEYS[3] veterans key  sorted set of the members that have seen a fencing token (heartbeat-3.lua)
    ARGV[1] instance id

  Output:
    {1}                   the member was registered and is gone now
    {0}                   it was not registered (already expired or never there)

  Run late: sent after the last heartbeat on the same connection, so no heartbeat of this
  process can bring the member back after it.
]]

redis.call('ZREM', KEYS[3], ARGV[1])
local removed = redis.call('DEL', KEYS[2]) + redis.call('ZREM', KEYS[1], ARGV[1])
if removed > 0 then
  return { 1 }
end
return { 0 }
