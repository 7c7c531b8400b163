local wf, now = ARGV[2], ARGV[3]
local wk = B .. 'wf:' .. wf
if redis.call('HGET', wk, 'state') ~= '0' then return 0 end
-- The workflow first: the cancellations below then leave it as it is.
redis.call('HSET', wk, 'state', 3, 'finished', now)
for _, id in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
  if not cancel_unstarted(id, now) and redis.call('HGET', B .. 't:' .. id, 'state') == '2' then
    redis.call('HSET', B .. 't:' .. id, 'cancel', 1)
  end
end
return 1
