-- The fields end_lease reads of a task, in this order.
local lease_fields = { 'state', 'token', 'cancel', 'queue', 'seq', 'prio', 'hist', 'started', 'attempt', 'errors', 'begun', 'lapses', 'intr', 'wf', 'pend', 'rw' }
local function lease_of(id) return redis.call('HMGET', B .. 't:' .. id, unpack(lease_fields)) end
-- Task id (c: its lease_fields), set to state st after its lease ended without an outcome: 1, ready again at its place
-- (returns its queue); or 8, a step held back (holds_back) that waits in pending (returns false; nil if that ended its
-- workflow, which cancelled it).
local function back_in(id, c, st, now)
  if st == 8 then
    idx(id, c[4], 2, 8, c[5])
    if step_held_back(c[14], now) then return nil end
    return false
  end
  ready(id, c[4], c[6], c[5])
  return c[4]
end
-- Ends the held lease of task id (c: its lease_fields) without an outcome, by LeaseRules (EndLease of the in-memory
-- backend); the caller takes it out of the leased set. Returns the task's queue when the task is ready again, false when
-- it waits in pending (back_in), else nil (it ended).
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
    local st = holds_back(c[14], c[15], c[16]) and 8 or 1
    redis.call('HSET', k, 'state', st, 'attempt', tonumber(c[9]) - 1, 'lapses', lapses, 'hist', ran .. st .. ':' .. now)
    return back_in(id, c, st, now)
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
  local st = holds_back(c[14], c[15], c[16]) and 8 or 1
  redis.call('HSET', k, 'state', st, 'redel', 1, 'hist', ran .. st .. ':' .. now, unpack(set))
  return back_in(id, c, st, now)
end
local function wake(woken) for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end end
-- What a lease's end (end_lease, back_in) returned for task id, into a reply of end_leases' form: its queue (q) to wake,
-- or, when it ended for good (nil), its id and state appended to reply.
local function settled(reply, woken, id, q)
  if q then
    woken[q] = true
  elseif q == nil then
    reply[#reply + 1] = id
    reply[#reply + 1] = tonumber(redis.call('HGET', B .. 't:' .. id, 'state'))
  end
end
-- Ends the leases of ids (members of the leased set) by end_lease. Returns how many were held, then the id and state of
-- each task that ended for good (cancelled, 6, when its cancel was asked or its workflow ended while it waited; else
-- dead, 5): { count, id, state, id, state, … }.
local function end_leases(ids, now, errjson, atjson, bound)
  bulk('ZREM', B .. 'leased', ids)
  local reply = { 0 }
  local woken = {}
  for _, id in ipairs(ids) do
    local c = lease_of(id)
    if c[1] == '2' then
      settled(reply, woken, id, end_lease(id, c, now, errjson, atjson, bound))
      reply[1] = reply[1] + 1
    end
  end
  wake(woken)
  return reply
end
