local k = B .. 'leader:' .. ARGV[2]
if redis.call('HGET', k, 'owner') == ARGV[3] then redis.call('DEL', k) return 1 end
return 0
