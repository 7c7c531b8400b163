local id, now = ARGV[2], ARGV[3]
local k = B .. 't:' .. id
local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'hist', 'wf')
if not cur[1] then return 0 end
local st = cur[1]
if st == '0' or st == '1' or st == '4' or st == '8' then
  if st == '1' then redis.call('ZREM', B .. 'q:' .. cur[2] .. ':ready', id) elseif st ~= '8' then redis.call('ZREM', B .. 'scheduled', id) end
  redis.call('HSET', k, 'state', 6, 'finished', now, 'hist', cur[4] .. '|6:' .. now)
  idx(id, cur[2], st, 6, cur[3])
  redis.call('ZADD', B .. 'finished', now, id)
  if cur[5] then step_ended(cur[5], id, 6, now, st == '8') end
  return 1
end
if st == '2' then
  redis.call('HSET', k, 'cancel', 1)
  return 2
end
return 3
