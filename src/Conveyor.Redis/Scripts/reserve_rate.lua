local key, now, span = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local k = B .. 'lim:r:' .. key
local first = math.max(now, tonumber(redis.call('GET', k) or '0'))
-- Microseconds since the epoch stay below 2^53: exact in Lua's doubles; written without an exponent.
redis.call('SET', k, string.format('%.0f', first + span))
redis.call('SADD', B .. 'lim:rates', key)
return string.format('%.0f', first)
