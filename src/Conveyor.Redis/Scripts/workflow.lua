-- Workflows (docs/workflows.md): a step's task hash has wf (its workflow) and pend (how many of the steps it runs after
-- have not succeeded; state 8, pending, while above 0). B wf:{id} workflow hash (state, left, created, finished, name,
-- steps, seq); B wf:{id}:tasks its steps' task ids; B wfe:{task id} the task ids of the steps that run after it;
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
-- What the end of step id (now in state st, at time at) does to workflow wf: a success releases each pending step that
-- runs after it and whose other dependencies have succeeded; the workflow succeeds with its last step, and fails with
-- its first step that ends otherwise, which cancels its steps that have not started.
local function step_ended(wf, id, st, at)
  local wk = B .. 'wf:' .. wf
  local ws = redis.call('HGET', wk, 'state')
  if not ws then return end
  local left = redis.call('HINCRBY', wk, 'left', -1)
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
        else
          redis.call('HSET', dk, 'pend', p)
        end
      end
    end
    if ws == '0' and left == 0 then redis.call('HSET', wk, 'state', 1, 'finished', at) end
  elseif ws == '0' then
    redis.call('HSET', wk, 'state', 2, 'finished', at)
    for _, t in ipairs(redis.call('SMEMBERS', wk .. ':tasks')) do cancel_unstarted(t, at) end
  end
end
