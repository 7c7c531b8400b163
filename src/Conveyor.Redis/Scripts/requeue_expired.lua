local now = ARGV[2]
return end_leases(redis.call('ZRANGEBYSCORE', B .. 'leased', '-inf', '(' .. now), now, ARGV[3], ARGV[4], ARGV[5])
