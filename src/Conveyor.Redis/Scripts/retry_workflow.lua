local wf, now, n = ARGV[2], ARGV[3], tonumber(ARGV[4])
local wk = B .. 'wf:' .. wf
local ws = redis.call('HGET', wk, 'state')
if ws ~= '2' and ws ~= '3' then return 0 end
-- First its failed steps (and its error step if it ended) back to pending, with a fresh set of attempts.
for i = 0, n - 1 do
  local id, err = ARGV[5 + i * 3], ARGV[6 + i * 3]
  local k = B .. 't:' .. id
  local c = redis.call('HMGET', k, 'state', 'queue', 'seq', 'hist')
  local st = c[1]
  if st == '5' or st == '6' or st == '7' or (err == '1' and st == '3') then
    redis.call('HDEL', k, 'finished', 'nb', 'exp')
    redis.call('HSET', k, 'state', 8, 'pend', 0, 'attempt', 0, 'cancel', 0, 'redel', 0, 'lapses', 0, 'intr', 0, 'hist', c[4] .. '|8:' .. now)
    redis.call('ZREM', B .. 'finished', id)
    idx(id, c[2], st, 8, c[3])
  end
end
-- Then every step that waits, the error step excepted, counts the steps it runs after that hold it back: those that
-- have not ended for one released when all ended (rw 1), else those that have not succeeded (a step's task that retention
-- deleted had ended: it holds nothing back, as on the SQL stores). A pending one (reset, or spared by a stop and counting
-- its first run's ends) is queued when none does; one released but not leased (scheduled, queued, retrying: spared by a
-- stop) goes back to pending when one does, so that it cannot run before the retried steps end; a leased one runs on (its
-- worker may have started it) and keeps the count, which the ends lower (release_after): if its lease ends without an
-- outcome while it is above 0, it goes back to pending, not to its queue (holds_back). The states these changes move
-- between hold nothing back: the order does not matter.
for i = 0, n - 1 do
  local id, err, after = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  local k = B .. 't:' .. id
  local c = redis.call('HMGET', k, 'state', 'queue', 'prio', 'seq', 'hist', 'rw')
  local st = c[1]
  if err ~= '1' and (st == '8' or st == '0' or st == '1' or st == '4' or st == '2') then
    local p = 0
    for dep in string.gmatch(after, '[^,]+') do
      local ds = redis.call('HGET', B .. 't:' .. dep, 'state')
      if ds and ds ~= '3' and (c[6] ~= '1' or not terminal(tonumber(ds))) then p = p + 1 end
    end
    if st == '2' then
      redis.call('HSET', k, 'pend', p)
    elseif st == '8' then
      if p == 0 then
        redis.call('HSET', k, 'state', 1, 'pend', 0, 'hist', c[5] .. '|1:' .. now)
        idx(id, c[2], 8, nil, c[4])
        ready(id, c[2], c[3], c[4])
        redis.call('PUBLISH', B .. 'wake', c[2])
      else
        redis.call('HSET', k, 'pend', p)
      end
    elseif p == 0 then
      -- Released, and held back by nothing: a count it kept from a lease at an earlier retry is spent.
      redis.call('HSET', k, 'pend', 0)
    else
      -- Out of the ready or scheduled set; a retry's wait is not kept: released when its count reaches 0.
      if st == '1' then
        redis.call('ZREM', B .. 'q:' .. c[2] .. ':ready', id)
      else
        redis.call('ZREM', B .. 'scheduled', id)
        redis.call('HDEL', k, 'nb')
      end
      redis.call('HSET', k, 'state', 8, 'pend', p, 'hist', c[5] .. '|8:' .. now)
      idx(id, c[2], st, 8, c[4])
    end
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
