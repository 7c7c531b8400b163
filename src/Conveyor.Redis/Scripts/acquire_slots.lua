local key, limit, owner, now, expires, n = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local z, h = slot_keys(key)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. now)) do
  drop_slot(key, id, redis.call('HGET', h, id))
end
local held = redis.call('ZCARD', z)
local out = {}
for i = 0, n - 1 do
  local id, token = ARGV[8 + i * 2], ARGV[9 + i * 2]
  local current = redis.call('HGET', h, id)
  -- A task that holds a slot takes it over under its new lease and owner, and counts once.
  if current or held < limit then
    if current then
      redis.call('SREM', B .. 'lim:o:' .. holder_owner(current), member(key, id))
    else
      held = held + 1
    end
    redis.call('ZADD', z, expires, id)
    redis.call('HSET', h, id, owner .. '|' .. token)
    redis.call('SADD', B .. 'lim:o:' .. owner, member(key, id))
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if held > 0 then redis.call('SADD', B .. 'lim:ckeys', key) end
return out
