local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local F = 9
local seen = {}
for i = 0, n - 1 do
  local id = ARGV[4 + i * F]
  if seen[id] or redis.call('EXISTS', B .. 't:' .. id) == 1 then
    return redis.error_reply('CONVEYOR duplicate task id ' .. id)
  end
  seen[id] = true
end
local out = {}
local woken = {}
local known = {}
-- One INCRBY for the batch; an idempotent duplicate leaves a gap, which orders nothing differently.
local first = redis.call('INCRBY', B .. 'seq', n) - n
for i = 0, n - 1 do
  local o = 4 + i * F
  local id, task, queue, prio = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local key = opt(ARGV[o + 5])
  local existing = false
  if key then existing = redis.call('HGET', B .. 'idem', key) end
  if existing then
    out[#out + 1] = { existing, 0, tonumber(redis.call('HGET', B .. 't:' .. existing, 'state') or '1') }
  else
    local nb = opt(ARGV[o + 6])
    local exp = opt(ARGV[o + 7])
    local state = 1
    if nb and tonumber(nb) > now then state = 0 end
    local seq = first + i + 1
    local k = B .. 't:' .. id
    redis.call('HSET', k, 'm', ARGV[o + 8], 'task', task, 'queue', queue, 'state', state, 'prio', prio,
      'max', ARGV[o + 4], 'seq', seq, 'attempt', 0, 'hist', state .. ':' .. now)
    if nb then redis.call('HSET', k, 'nb', nb) end
    if exp then redis.call('HSET', k, 'exp', exp) end
    if key then
      redis.call('HSET', k, 'key', key)
      redis.call('HSET', B .. 'idem', key, id)
    end
    if not known[queue] then
      redis.call('HSETNX', B .. 'queues', queue, '0')
      known[queue] = true
    end
    redis.call('ZADD', B .. 'n:' .. task, seq, id)
    if state == 0 then
      idx(id, queue, nil, 0, seq)
      redis.call('ZADD', B .. 'scheduled', nb, id)
    else
      ready(id, queue, prio, seq)
      woken[queue] = true
    end
    out[#out + 1] = { id, 1, state }
  end
end
for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end
return out
