--[[
  Append an entry to a stream only if the writer's fencing token is current: not lower than any
  token the stream has accepted, and not lower than the newest token the lease has handed out.
  A leader that lost its lease without knowing it (paused, partitioned, slow network) cannot
  write once its successor exists, even before the successor's first write.

  Input:
    KEYS[1] stream key
    KEYS[2] fence key    string integer: the highest token this stream has accepted
    KEYS[3] issued key   string integer: the lease's token counter (the newest token handed out);
                         may be absent (then only the fence key counts)
    ARGV[1] token        the writer's fencing token
    ARGV[2] maxlen       approximate cap on the stream length (XADD MAXLEN ~)
    ARGV[3..]            field, value, field, value, ... (the entry; "token" is added first)

  Output:
    {1, id}              accepted; id is the stream entry id
    {-1, newest}         rejected: a newer leadership (token newest, a decimal string) exists
]]
local token = tonumber(ARGV[1])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
local newest = math.max(fence, tonumber(redis.call('GET', KEYS[3]) or '0'))
if token < newest then
  return {-1, string.format('%.0f', newest)}
end
if token > fence then
  redis.call('SET', KEYS[2], ARGV[1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'token', ARGV[1], unpack(ARGV, 3))
return {1, id}
