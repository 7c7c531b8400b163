local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local id, token = ARGV[3 + i * 2], ARGV[4 + i * 2]
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'state', 'token')
  if cur[1] == '2' and cur[2] == token then
    redis.call('HSET', k, 'begun', token)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
