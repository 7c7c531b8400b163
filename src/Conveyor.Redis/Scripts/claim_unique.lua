local cur = redis.call('HGET', B .. 'unique', ARGV[2])
if ARGV[4] == '' then
  if cur then return 0 end
elseif (not cur) or string.sub(cur, 1, string.len(ARGV[4]) + 1) ~= ARGV[4] .. '|' then
  return 0
end
redis.call('HSET', B .. 'unique', ARGV[2], ARGV[3])
return 1
