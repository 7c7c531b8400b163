-- Workflows (docs/workflows.md): a step's task hash has wf (its workflow) and pend (how many of the steps it runs after
-- have not succeeded; state 8, pending, while above 0). B wf:{id} workflow hash (state, active, failed, err,
-- created, finished, name, steps, seq); B wf:{id}:tasks its steps' task ids; B wfe:{task id} the task ids of the steps that run after it;
-- B workflows (score: sequence). The script that ends a step calls step_ended, so the release is in the same script.
-- Cancels a step that has not started (scheduled, queued, retrying or pending); true when it did.
local function cancel_unstarted(id, at)
  local k = B .. 't:' .. id
  local c = redis.call('HMGET', k, 'state', 'queue', 'seq', 'hist')
  local st = c[1]
  if st == '0' or st == '1' or st == '4' or st == '8' then
    if st == '1' then redis.call('ZREM', B .. 'q:' .. c[2] .. ':ready', id)
    elseif st ~= '8' then redis.call('ZREM', B .. 'scheduled', id) end
    redis.call('HSET', k, 'state', 6, 'finished', at, 'hist', c[4] .. '|6:' .. at)
    idx(id, c[2], st, 6, c[3])
    redis.call('ZADD', B .. 'finished', at, id)
    return true
  end
  return false
end
-- What the end of step id (now in state st, at time at; was_pending: it ended while pending, by a cancel) does to
-- workflow wf, while it runs: a success releases each pending step that runs after it and whose other dependencies have
-- succeeded; the first failure queues the error step (err); a failure under the policy stop (the step's onf 0) fails the
-- workflow at once and cancels its steps that have not started, the error step excepted; the workflow ends when none of
-- its steps is active (active: scheduled, queued, running, retrying), its pending steps cancelled (they can never run).
local function step_ended(wf, id, st, at, was_pending)
  local wk = B .. 'wf:' .. wf
  local w = redis.call('HMGET', wk, 'state', 'active', 'failed', 'err')
  if w[1] ~= '0' then return end
  local active = tonumber(w[2])
  if not active then
    -- Stored before the active count (a 'left' count instead): counted once.
    active = 0
    for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
      local ts = redis.call('HGET', B .. 't:' .. t, 'state')
      if ts == '0' or ts == '1' or ts == '2' or ts == '4' or (t == id and not was_pending) then active = active + 1 end
    end
  end
  if not was_pending then active = active - 1 end
  local failed = w[3] == '1'
  if tonumber(st) == 3 then
    for _, dep in ipairs(redis.call('LRANGE', B .. 'wfe:' .. id, 0, -1)) do
      local dk = B .. 't:' .. dep
      local d = redis.call('HMGET', dk, 'state', 'pend', 'queue', 'prio', 'seq', 'hist')
      if d[1] == '8' then
        local p = tonumber(d[2]) - 1
        if p == 0 then
          redis.call('HSET', dk, 'state', 1, 'pend', 0, 'hist', d[6] .. '|1:' .. at)
          idx(dep, d[3], 8, nil, d[5])
          ready(dep, d[3], d[4], d[5])
          redis.call('PUBLISH', B .. 'wake', d[3])
          active = active + 1
        else
          redis.call('HSET', dk, 'pend', p)
        end
      end
    end
  else
    if not failed and w[4] then
      local ek = B .. 't:' .. w[4]
      local e = redis.call('HMGET', ek, 'state', 'queue', 'prio', 'seq', 'hist')
      if e[1] == '8' then
        redis.call('HSET', ek, 'state', 1, 'pend', 0, 'hist', e[5] .. '|1:' .. at)
        idx(w[4], e[2], 8, nil, e[4])
        ready(w[4], e[2], e[3], e[4])
        redis.call('PUBLISH', B .. 'wake', e[2])
        active = active + 1
      end
    end
    failed = true
    if redis.call('HGET', B .. 't:' .. id, 'onf') ~= '1' then
      -- The workflow first: the cancellations below then leave it as it is.
      redis.call('HSET', wk, 'state', 2, 'failed', 1, 'active', active, 'finished', at)
      for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
        if t ~= w[4] then cancel_unstarted(t, at) end
      end
      return
    end
  end
  if active == 0 then
    redis.call('HSET', wk, 'state', failed and 2 or 1, 'failed', failed and 1 or 0, 'active', 0, 'finished', at)
    for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
      if redis.call('HGET', B .. 't:' .. t, 'state') == '8' then cancel_unstarted(t, at) end
    end
  else
    redis.call('HSET', wk, 'active', active, 'failed', failed and 1 or 0)
  end
end
