local owner = ARGV[2]
local o = B .. 'lim:o:' .. owner
local released = 0
for _, m in ipairs(redis.call('SMEMBERS', o)) do
  local key, id = string.sub(m, 1, -38), string.sub(m, -36)
  local z, h = slot_keys(key)
  local holder = redis.call('HGET', h, id)
  if holder and holder_owner(holder) == owner then
    redis.call('ZREM', z, id)
    redis.call('HDEL', h, id)
    released = released + 1
  end
end
redis.call('DEL', o)
return released
