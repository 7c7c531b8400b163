local ids = redis.call('ZRANGEBYSCORE', B .. 'finished', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'queue', 'task', 'state', 'key')
  redis.call('ZREM', B .. 'finished', id)
  if cur[1] then
    redis.call('ZREM', B .. 'n:' .. cur[2], id)
    idx(id, cur[1], cur[3], nil, nil)
    if cur[4] and redis.call('HGET', B .. 'idem', cur[4]) == id then redis.call('HDEL', B .. 'idem', cur[4]) end
    redis.call('DEL', k)
  end
end
return #ids
