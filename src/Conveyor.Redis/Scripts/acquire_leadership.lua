local k = B .. 'leader:' .. ARGV[2]
local cur = redis.call('HMGET', k, 'owner', 'exp')
if (not cur[1]) or cur[1] == ARGV[3] or tonumber(cur[2]) < tonumber(ARGV[4]) then
  redis.call('HSET', k, 'owner', ARGV[3], 'exp', ARGV[5])
  return 1
end
return 0
