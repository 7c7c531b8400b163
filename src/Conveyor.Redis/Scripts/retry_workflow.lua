local wf, now, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local wk = B .. 'wf:' .. wf
local ws = redis.call('HGET', wk, 'state')
if ws ~= '2' and ws ~= '3' then return 0 end
-- First its failed steps (and its error step if it ended) back to pending, then each failed step's count of the steps it
-- runs after that have not succeeded, those at 0 queued.
local reset = {}
for i = 0, n - 1 do
  local id, err, after = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  local k = B .. 't:' .. id
  local c = redis.call('HMGET', k, 'state', 'queue', 'seq', 'hist')
  local st = c[1]
  if st == '5' or st == '6' or st == '7' or (err == '1' and st == '3') then
    redis.call('HDEL', k, 'finished', 'nb', 'exp')
    redis.call('HSET', k, 'state', 8, 'pend', 0, 'attempt', 0, 'cancel', 0, 'redel', 0, 'lapses', 0, 'intr', 0, 'hist', c[4] .. '|8:' .. now)
    redis.call('ZREM', B .. 'finished', id)
    idx(id, c[2], st, 8, c[3])
    if err ~= '1' then reset[#reset + 1] = { id, after } end
  end
end
for _, r in ipairs(reset) do
  local p = 0
  for dep in string.gmatch(r[2], '[^,]+') do
    if redis.call('HGET', B .. 't:' .. dep, 'state') ~= '3' then p = p + 1 end
  end
  local k = B .. 't:' .. r[1]
  if p == 0 then
    local c = redis.call('HMGET', k, 'queue', 'prio', 'seq', 'hist')
    redis.call('HSET', k, 'state', 1, 'hist', c[4] .. '|1:' .. now)
    idx(r[1], c[1], 8, nil, c[3])
    ready(r[1], c[1], c[2], c[3])
    redis.call('PUBLISH', B .. 'wake', c[1])
  else
    redis.call('HSET', k, 'pend', p)
  end
end
local active = 0
for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
  local ts = redis.call('HGET', B .. 't:' .. t, 'state')
  if ts == '0' or ts == '1' or ts == '2' or ts == '4' then active = active + 1 end
end
redis.call('HDEL', wk, 'finished')
redis.call('HSET', wk, 'state', 0, 'failed', 0, 'active', active)
return 1
