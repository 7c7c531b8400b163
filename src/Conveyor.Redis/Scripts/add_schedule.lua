if redis.call('HSETNX', B .. 'schedules', ARGV[2], ARGV[4]) == 0 then return 0 end
redis.call('HSET', B .. 'schedules:v', ARGV[2], ARGV[3])
return 1
