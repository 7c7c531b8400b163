local owner, now, expires, n = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local out = {}
for i = 0, n - 1 do
  local key, id, token = ARGV[6 + i * 3], ARGV[7 + i * 3], ARGV[8 + i * 3]
  local z, h = slot_keys(key)
  local score = redis.call('ZSCORE', z, id)
  if redis.call('HGET', h, id) == owner .. '|' .. token and score and tonumber(score) >= now then
    redis.call('ZADD', z, expires, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
