local now = ARGV[2]
local n = tonumber(ARGV[3])
local changed = 0
for i = 0, n - 1 do
  local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'state', 'token', 'queue', 'seq', 'prio', 'hist', 'started', 'attempt')
  if cur[1] == '2' and cur[2] == token then
    redis.call('HSET', k, 'state', 1, 'attempt', tonumber(cur[8]) - 1, 'hist', cur[6] .. '|2:' .. cur[7] .. '|1:' .. now)
    redis.call('ZREM', B .. 'leased', id)
    ready(id, cur[3], cur[5], cur[4])
    redis.call('PUBLISH', B .. 'wake', cur[3])
    changed = changed + 1
  end
end
return changed
