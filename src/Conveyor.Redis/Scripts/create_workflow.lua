local now = tonumber(ARGV[2])
local wf = ARGV[3]
local wk = B .. 'wf:' .. wf
local n = tonumber(ARGV[7])
local F = 13
-- All or nothing: every check runs before the first write.
if redis.call('EXISTS', wk) == 1 then return redis.error_reply('CONVEYOR duplicate workflow id ' .. wf) end
for i = 0, n - 1 do
  local id = ARGV[8 + i * F]
  if redis.call('EXISTS', B .. 't:' .. id) == 1 then return redis.error_reply('CONVEYOR duplicate task id ' .. id) end
end
local first = redis.call('INCRBY', B .. 'seq', n) - n
local woken = {}
local known = {}
local ids = {}
local active = 0
local err = nil
for i = 0, n - 1 do
  local o = 8 + i * F
  local id, task, queue, prio = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local nb, exp = opt(ARGV[o + 5]), opt(ARGV[o + 6])
  local pend = tonumber(ARGV[o + 8])
  local state = 1
  -- The error step waits, pending, for a failure.
  if pend > 0 or ARGV[o + 11] == '1' then state = 8 elseif nb and tonumber(nb) > now then state = 0 end
  if state ~= 8 then active = active + 1 end
  if ARGV[o + 11] == '1' then err = id end
  local seq = first + i + 1
  local k = B .. 't:' .. id
  redis.call('HSET', k, 'm', ARGV[o + 7], 'task', task, 'queue', queue, 'state', state, 'prio', prio,
    'max', ARGV[o + 4], 'seq', seq, 'attempt', 0, 'hist', state .. ':' .. now, 'wf', wf, 'pend', pend, 'onf', ARGV[o + 10])
  -- Released once every step it runs after ended, whatever the outcome (a batch's onComplete).
  if ARGV[o + 12] == '1' then redis.call('HSET', k, 'rw', 1) end
  if nb then redis.call('HSET', k, 'nb', nb) end
  if exp then redis.call('HSET', k, 'exp', exp) end
  if not known[queue] then
    redis.call('HSETNX', B .. 'queues', queue, '0')
    known[queue] = true
  end
  redis.call('ZADD', B .. 'n:' .. task, seq, id)
  if state == 0 then
    idx(id, queue, nil, 0, seq)
    redis.call('ZADD', B .. 'scheduled', nb, id)
  elseif state == 8 then
    idx(id, queue, nil, 8, seq)
  else
    ready(id, queue, prio, seq)
    woken[queue] = true
  end
  for dep in string.gmatch(ARGV[o + 9], '[^,]+') do redis.call('RPUSH', B .. 'wfe:' .. dep, id) end
  ids[#ids + 1] = id
end
local wseq = redis.call('INCR', B .. 'wfseq')
redis.call('HSET', wk, 'state', 0, 'created', ARGV[5], 'active', active, 'failed', 0, 'steps', ARGV[6], 'seq', wseq)
if err then redis.call('HSET', wk, 'err', err) end
local name = opt(ARGV[4])
if name then redis.call('HSET', wk, 'name', name) end
redis.call('ZADD', B .. 'workflows', wseq, wf)
bulk('SADD', wk .. ':tasks', ids)
for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end
return n
