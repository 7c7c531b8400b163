local before = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local only = ARGV[4]
local queues = {}
if only ~= '' then queues = { only } else queues = redis.call('HKEYS', B .. 'queues') end
local found = {}
local upper = string.format('(%.0f', before)
for _, q in ipairs(queues) do
  for _, st in ipairs({ '0', '3', '4', '5', '6', '7' }) do
    local r = redis.call('ZRANGE', B .. 'q:' .. q .. ':s:' .. st, upper, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit, 'WITHSCORES')
    for j = 1, #r, 2 do found[#found + 1] = { r[j], tonumber(r[j + 1]) } end
  end
  ready_range(q, before, limit, found)
end
for _, id in ipairs(redis.call('ZRANGE', B .. 'leased', 0, -1)) do
  local f = redis.call('HMGET', B .. 't:' .. id, 'seq', 'queue')
  if f[1] and (only == '' or f[2] == only) and tonumber(f[1]) < before then
    found[#found + 1] = { id, tonumber(f[1]) }
  end
end
return newest(found, limit)
