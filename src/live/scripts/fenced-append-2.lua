--[[
  Append an entry to a stream only if its fencing token is not older than any token the stream
  has accepted: a leader that lost its lease without knowing it cannot write after its successor.

  Input:
    KEYS[1] stream key
    KEYS[2] fence key    string integer: the highest token this stream has accepted
    ARGV[1] token        the writer's fencing token
    ARGV[2] maxlen       approximate cap on the stream length (XADD MAXLEN ~)
    ARGV[3..]            field, value, field, value, ... (the entry; "token" is added)

  Output:
    {1, id}              accepted; id is the stream entry id
    {-1, highest}        rejected: a newer leadership (token highest) has written already
]]
local token = tonumber(ARGV[1])
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
if token < highest then
  return {-1, tostring(highest)}
end
if token > highest then
  redis.call('SET', KEYS[2], ARGV[1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'token', ARGV[1], unpack(ARGV, 3))
return {1, id}
