local cur = redis.call('HGET', B .. 'unique', ARGV[2])
if cur and string.sub(cur, 1, string.len(ARGV[3]) + 1) == ARGV[3] .. '|' then
  redis.call('HDEL', B .. 'unique', ARGV[2])
  return 1
end
return 0
