local now, errjson, atjson = ARGV[2], ARGV[3], ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', B .. 'leased', '-inf', '(' .. now)
local count = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', B .. 'leased', id)
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'state', 'attempt', 'max', 'cancel', 'queue', 'seq', 'prio', 'hist', 'started', 'errors')
  if cur[1] == '2' then
    local entry = '{"attempt":' .. cur[2] .. ',"at":' .. atjson .. ',"error":' .. errjson .. '}'
    local cancelled = cur[4] == '1'
    local ran = cur[8] .. '|2:' .. cur[9] .. '|'
    if cancelled or tonumber(cur[2]) >= tonumber(cur[3]) then
      local st = 5
      if cancelled then
        st = 6
        redis.call('HSET', k, 'state', st, 'finished', now, 'hist', ran .. st .. ':' .. now)
      else
        redis.call('HSET', k, 'state', st, 'finished', now, 'hist', ran .. st .. ':' .. now,
          'error', errjson, 'errors', append_error(cur[10], entry))
      end
      idx(id, cur[5], 2, st, cur[6])
      redis.call('ZADD', B .. 'finished', now, id)
    else
      redis.call('HSET', k, 'state', 1, 'redel', 1, 'error', errjson, 'errors', append_error(cur[10], entry),
        'hist', ran .. '1:' .. now)
      ready(id, cur[5], cur[7], cur[6])
      redis.call('PUBLISH', B .. 'wake', cur[5])
    end
    count = count + 1
  end
end
return count
