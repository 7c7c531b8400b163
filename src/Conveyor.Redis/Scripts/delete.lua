local st = ARGV[2]
local deleted = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'queue', 'task', 'state', 'key')
  if cur[1] and cur[3] == st then
    redis.call('ZREM', B .. 'finished', id)
    redis.call('ZREM', B .. 'n:' .. cur[2], id)
    idx(id, cur[1], cur[3], nil, nil)
    if cur[4] and redis.call('HGET', B .. 'idem', cur[4]) == id then redis.call('HDEL', B .. 'idem', cur[4]) end
    redis.call('DEL', k)
    deleted = deleted + 1
  end
end
return deleted
