local counts = {}
for _, id in ipairs(redis.call('ZRANGE', B .. 'leased', 0, -1)) do
  local q = redis.call('HGET', B .. 't:' .. id, 'queue')
  if q then counts[q] = (counts[q] or 0) + 1 end
end
local out = {}
for q, n in pairs(counts) do out[#out + 1] = q out[#out + 1] = n end
return out
