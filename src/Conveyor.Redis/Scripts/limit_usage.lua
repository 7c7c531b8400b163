local now = ARGV[2]
local rates, slots = {}, {}
for _, key in ipairs(redis.call('SMEMBERS', B .. 'lim:rates')) do
  local v = redis.call('GET', B .. 'lim:r:' .. key)
  if v then
    rates[#rates + 1] = key
    rates[#rates + 1] = v
  end
end
for _, key in ipairs(redis.call('SMEMBERS', B .. 'lim:ckeys')) do
  local z = slot_keys(key)
  local live = redis.call('ZCOUNT', z, now, '+inf')
  if live > 0 then
    slots[#slots + 1] = key
    slots[#slots + 1] = live
  elseif redis.call('ZCARD', z) == 0 then
    redis.call('SREM', B .. 'lim:ckeys', key)
  end
end
return { rates, slots }
