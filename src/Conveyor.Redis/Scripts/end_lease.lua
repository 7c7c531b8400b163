-- The fields end_lease reads of a task, in this order.
local lease_fields = { 'state', 'token', 'cancel', 'queue', 'seq', 'prio', 'hist', 'started', 'attempt', 'errors', 'begun', 'lapses', 'intr', 'wf' }
local function lease_of(id) return redis.call('HMGET', B .. 't:' .. id, unpack(lease_fields)) end
-- Ends the held lease of task id (c: its lease_fields) without an outcome, by LeaseRules (EndLease of the in-memory
-- backend); the caller takes it out of the leased set. Returns the task's queue when the task is ready again, else nil.
-- The lease started when begun holds its token (start.lua): a new lease has a new token, so fetch writes nothing for it.
local function end_lease(id, c, now, errjson, atjson, bound)
  local k = B .. 't:' .. id
  local ran = c[7] .. '|2:' .. c[8] .. '|'
  if c[3] == '1' then
    -- Its cancel was asked: the task ends cancelled, with no error of its own.
    redis.call('HSET', k, 'state', 6, 'finished', now, 'hist', ran .. '6:' .. now)
    idx(id, c[4], 2, 6, c[5])
    redis.call('ZADD', B .. 'finished', now, id)
    if c[14] then step_ended(c[14], id, 6, now) end
    return nil
  end
  local lapses = (tonumber(c[12]) or 0) + 1
  if c[11] ~= c[2] then
    -- It never started: the attempt is not spent, and the task keeps its place (its sequence).
    redis.call('HSET', k, 'state', 1, 'attempt', tonumber(c[9]) - 1, 'lapses', lapses, 'hist', ran .. '1:' .. now)
    ready(id, c[4], c[6], c[5])
    return c[4]
  end
  -- An interrupted attempt is recorded as failed, like one that threw.
  local intr = (tonumber(c[13]) or 0) + 1
  local entry = '{"attempt":' .. c[9] .. ',"at":' .. atjson .. ',"error":' .. errjson .. '}'
  local set = { 'lapses', lapses, 'intr', intr, 'error', errjson, 'errors', append_error(c[10], entry) }
  if intr >= tonumber(bound) then
    -- A task that kills its worker every time is not redelivered forever.
    redis.call('HSET', k, 'state', 5, 'finished', now, 'hist', ran .. '5:' .. now, unpack(set))
    idx(id, c[4], 2, 5, c[5])
    redis.call('ZADD', B .. 'finished', now, id)
    if c[14] then step_ended(c[14], id, 5, now) end
    return nil
  end
  redis.call('HSET', k, 'state', 1, 'redel', 1, 'hist', ran .. '1:' .. now, unpack(set))
  ready(id, c[4], c[6], c[5])
  return c[4]
end
local function wake(woken) for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end end
-- Ends the leases of ids (members of the leased set) by end_lease. Returns how many were held, then the id and state of
-- each task that ended for good (cancelled, 6, when its cancel was asked; else dead, 5): { count, id, state, id, state, … }.
local function end_leases(ids, now, errjson, atjson, bound)
  bulk('ZREM', B .. 'leased', ids)
  local reply = { 0 }
  local woken = {}
  for _, id in ipairs(ids) do
    local c = lease_of(id)
    if c[1] == '2' then
      local q = end_lease(id, c, now, errjson, atjson, bound)
      if q then
        woken[q] = true
      else
        reply[#reply + 1] = id
        reply[#reply + 1] = c[3] == '1' and 6 or 5
      end
      reply[1] = reply[1] + 1
    end
  end
  wake(woken)
  return reply
end
