-- Retention of workflows: deletes up to ARGV[3] workflows that ended (1 succeeded, 2 failed, 3 cancelled) before ARGV[2]
-- and none of whose steps is unfinished, each with its steps' tasks (and their index entries, as purge.lua deletes a
-- task), the lists of their dependents and the workflow's hash. Reads the workflows index oldest first, at most
-- ARGV[4] entries a call (a running workflow at its head is stepped over, not waited for).
local before, max, scan = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local terminal = { ['3'] = true, ['5'] = true, ['6'] = true, ['7'] = true }
local deleted = 0
for _, wf in ipairs(redis.call('ZRANGE', B .. 'workflows', 0, scan - 1)) do
  if deleted >= max then break end
  local wk = B .. 'wf:' .. wf
  local w = redis.call('HMGET', wk, 'state', 'finished')
  if (w[1] == '1' or w[1] == '2' or w[1] == '3') and w[2] and tonumber(w[2]) < before then
    local tasks = redis.call('SMEMBERS', wk .. ':tasks')
    local done = true
    for _, id in ipairs(tasks) do
      local state = redis.call('HGET', B .. 't:' .. id, 'state')
      if state and not terminal[state] then done = false break end
    end
    if done then
      for _, id in ipairs(tasks) do
        local k = B .. 't:' .. id
        local cur = redis.call('HMGET', k, 'queue', 'task', 'state', 'key')
        if cur[1] then
          redis.call('ZREM', B .. 'finished', id)
          redis.call('ZREM', B .. 'n:' .. cur[2], id)
          idx(id, cur[1], cur[3], nil, nil)
          if cur[4] and redis.call('HGET', B .. 'idem', cur[4]) == id then redis.call('HDEL', B .. 'idem', cur[4]) end
          redis.call('DEL', k)
        end
        redis.call('DEL', B .. 'wfe:' .. id)
      end
      redis.call('DEL', wk, wk .. ':tasks')
      redis.call('ZREM', B .. 'workflows', wf)
      deleted = deleted + 1
    end
  end
end
return deleted
