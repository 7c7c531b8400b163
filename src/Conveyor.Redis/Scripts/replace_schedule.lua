if redis.call('HGET', B .. 'schedules:v', ARGV[2]) ~= ARGV[5] then return 0 end
redis.call('HSET', B .. 'schedules', ARGV[2], ARGV[4])
redis.call('HSET', B .. 'schedules:v', ARGV[2], ARGV[3])
return 1
