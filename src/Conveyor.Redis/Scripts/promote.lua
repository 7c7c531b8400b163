local now = ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', B .. 'scheduled', '-inf', now)
local count = 0
local woken = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', B .. 'scheduled', id)
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'prio', 'hist')
  if cur[1] == '0' or cur[1] == '4' then
    redis.call('HSET', k, 'state', 1, 'hist', cur[5] .. '|1:' .. now)
    idx(id, cur[2], cur[1], 1, cur[3])
    ready(id, cur[2], cur[4], cur[3])
    woken[cur[2]] = true
    count = count + 1
  end
end
for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end
return count
