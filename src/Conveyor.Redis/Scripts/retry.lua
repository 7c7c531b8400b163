local id, now = ARGV[2], ARGV[3]
local k = B .. 't:' .. id
local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'prio', 'hist')
if not cur[1] then return 0 end
local st = cur[1]
if st ~= '5' and st ~= '6' and st ~= '7' then return 2 end
redis.call('HDEL', k, 'finished', 'nb', 'exp')
redis.call('HSET', k, 'state', 1, 'attempt', 0, 'cancel', 0, 'redel', 0, 'lapses', 0, 'intr', 0, 'hist', cur[5] .. '|1:' .. now)
redis.call('ZREM', B .. 'finished', id)
idx(id, cur[2], st, 1, cur[3])
ready(id, cur[2], cur[4], cur[3])
redis.call('PUBLISH', B .. 'wake', cur[2])
return 1
