local out = {}
for _, q in ipairs(redis.call('HKEYS', B .. 'queues')) do
  local head = redis.call('ZRANGE', B .. 'q:' .. q .. ':ready', 0, 0)[1]
  if head then
    local cur = redis.call('HMGET', B .. 't:' .. head, 'nb', 'hist')
    local created = cur[2] and tonumber(string.match(cur[2], '^%d+:(%d+)')) or nil
    local at = created
    if cur[1] and (at == nil or tonumber(cur[1]) > at) then at = tonumber(cur[1]) end
    if at then out[#out + 1] = q out[#out + 1] = at end
  end
end
return out
