local n = tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
  local cur = redis.call('HMGET', B .. 't:' .. id, 'state', 'token', 'cancel')
  if cur[1] == '2' and cur[2] == token then
    redis.call('ZADD', B .. 'leased', 'XX', ARGV[2], id)
    if cur[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
