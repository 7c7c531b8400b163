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
-- Releases each pending step that runs after step id (ended at time at) and whose count reaches 0: every one when all
-- (a success), else those released when all ended (rw 1, a batch's onComplete). Returns how many.
local function release_after(id, at, all)
  local n = 0
  for _, dep in ipairs(redis.call('LRANGE', B .. 'wfe:' .. id, 0, -1)) do
    local dk = B .. 't:' .. dep
    local d = redis.call('HMGET', dk, 'state', 'pend', 'queue', 'prio', 'seq', 'hist', 'rw')
    -- One not pending was counted by a retry while leased (holds_back): its count falls, and it runs on (or waits for
    -- its own retry); only a pending one is queued. Any other's count is 0.
    local counted = d[1] == '0' or d[1] == '1' or d[1] == '2' or d[1] == '4'
    if (d[1] == '8' or (counted and (tonumber(d[2]) or 0) > 0)) and (all or d[7] == '1') then
      local p = tonumber(d[2]) - 1
      if p == 0 and d[1] == '8' then
        redis.call('HSET', dk, 'state', 1, 'pend', 0, 'hist', d[6] .. '|1:' .. at)
        idx(dep, d[3], 8, nil, d[5])
        ready(dep, d[3], d[4], d[5])
        redis.call('PUBLISH', B .. 'wake', d[3])
        n = n + 1
      else
        redis.call('HSET', dk, 'pend', p)
      end
    end
  end
  return n
end
-- What the end of step id (now in state st, at time at; was_pending: it ended while pending, by a cancel) does to
-- workflow wf, while it runs: a success releases each pending step that runs after it and whose other dependencies have
-- succeeded, and any end those released when all ended (rw 1); the first failure queues the error step (err); a failure
-- under the policy stop (the step's onf 0) fails the workflow at once (active -1) and cancels its steps that have not
-- started, the error step and those released when all ended excepted; the workflow ends when none of
-- its steps is active (active: scheduled, queued, running, retrying), its pending steps cancelled (they can never run).
local function step_ended(wf, id, st, at, was_pending)
  local wk = B .. 'wf:' .. wf
  local w = redis.call('HMGET', wk, 'state', 'active', 'failed', 'err')
  if w[1] ~= '0' then
    -- Failed by a stop (active -1): its ends still release the steps released when all ended, which the stop spared.
    if w[1] == '2' and w[2] == '-1' then release_after(id, at, false) end
    return
  end
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
  active = active + release_after(id, at, tonumber(st) == 3)
  if tonumber(st) ~= 3 then
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
      -- The workflow first (its count no longer kept: -1). The steps released when all ended are spared, and count
      -- the steps cancelled here as ended.
      redis.call('HSET', wk, 'state', 2, 'failed', 1, 'active', -1, 'finished', at)
      local cancelled = {}
      for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
        if t ~= w[4] and redis.call('HGET', B .. 't:' .. t, 'rw') ~= '1' and cancel_unstarted(t, at) then cancelled[#cancelled + 1] = t end
      end
      for _, t in ipairs(cancelled) do release_after(t, at, false) end
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
-- Whether a step whose lease ended without an outcome waits again in pending rather than in its queue: its workflow's
-- retry counted it while it was leased (pend, lowered by the ends since: release_after) and steps that retry ran again
-- still hold it back, and its workflow would release it (running, or failed by a stop that spared it: rw 1). Any other
-- step's pend is 0 while it runs.
local function holds_back(wf, pend, rw)
  if not wf or (tonumber(pend) or 0) <= 0 then return false end
  local w = redis.call('HMGET', B .. 'wf:' .. wf, 'state', 'active')
  return w[1] == '0' or (w[1] == '2' and w[2] == '-1' and rw == '1')
end
-- A step of workflow wf went back from running to pending (holds_back): a running workflow has one active step less, and
-- ends if none is left (what holds the step back can never end: a failure under continue), its pending steps cancelled.
-- Returns true when it ended.
local function step_held_back(wf, at)
  local wk = B .. 'wf:' .. wf
  local w = redis.call('HMGET', wk, 'state', 'active', 'failed')
  if w[1] ~= '0' then return false end
  local active = (tonumber(w[2]) or 1) - 1
  if active > 0 then
    redis.call('HSET', wk, 'active', active)
    return false
  end
  redis.call('HSET', wk, 'state', w[3] == '1' and 2 or 1, 'active', 0, 'finished', at)
  for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do
    if redis.call('HGET', B .. 't:' .. t, 'state') == '8' then cancel_unstarted(t, at) end
  end
  return true
end
