local n = tonumber(ARGV[2])
-- The completions not settled as asked, flat: index in the batch (0-based), then the state given, or -1 when ignored
-- (lease no longer held). Empty for a batch settled as asked.
local otherwise = {}
local adds, rems = {}, {}
-- Steps of workflows that ended: their workflows are updated after the batch's bulk writes.
local ends = {}
for i = 0, n - 1 do
  local o = 3 + i * 10
  local id, token, at = ARGV[o], ARGV[o + 1], ARGV[o + 7]
  local k = B .. 't:' .. id
  local cur = redis.call('HMGET', k, 'state', 'token', 'cancel', 'queue', 'seq', 'hist', 'errors', 'started', 'nb', 'redel', 'attempt', 'wf')
  if cur[1] == '2' and cur[2] == token then
    local asked = tonumber(ARGV[o + 2])
    local st = asked
    -- A retry of a task whose cancel was asked cancels it: the cancel must not be lost.
    if st == 4 and cur[3] == '1' then st = 6 end
    -- A step's retry while steps its workflow's retry ran again hold it back (holds_back) takes it back to pending, as its
    -- lease's end would: its retry's wait dropped, the attempt it ran kept. Plain tasks stop at the first test.
    local held = false
    if st == 4 and cur[12] then
      local c = redis.call('HMGET', k, 'pend', 'rw')
      held = holds_back(cur[12], c[1], c[2])
      if held then st = 8 end
    end
    local set = { 'state', st, 'hist', cur[6] .. '|2:' .. cur[8] .. '|' .. st .. ':' .. at }
    if cur[3] == '1' then set[#set + 1] = 'cancel' set[#set + 1] = 0 end
    if cur[10] == '1' then set[#set + 1] = 'redel' set[#set + 1] = 0 end
    -- A retry of an attempt whose handler never started (no handler on that worker) does not spend it.
    if ARGV[o + 8] == '1' then set[#set + 1] = 'attempt' set[#set + 1] = tonumber(cur[11]) - 1 end
    local result = opt(ARGV[o + 3])
    if result then set[#set + 1] = 'result' set[#set + 1] = result end
    local err = opt(ARGV[o + 4])
    if err then set[#set + 1] = 'error' set[#set + 1] = err end
    local entry = opt(ARGV[o + 5])
    if entry then set[#set + 1] = 'errors' set[#set + 1] = append_error(cur[7], entry) end
    local nb = opt(ARGV[o + 6]) or at
    -- A retry may replace the headers: kept beside the immutable message (m), whose are then ignored.
    local hdr = opt(ARGV[o + 9])
    if asked == 4 and hdr then set[#set + 1] = 'hdr' set[#set + 1] = hdr end
    if asked == 4 and not held then set[#set + 1] = 'nb' set[#set + 1] = nb elseif cur[9] then redis.call('HDEL', k, 'nb') end
    if terminal(st) then
      set[#set + 1] = 'finished' set[#set + 1] = at
      local l = list(adds, B .. 'finished') l[#l + 1] = at l[#l + 1] = id
    elseif not held then
      local l = list(adds, B .. 'scheduled') l[#l + 1] = nb l[#l + 1] = id
    end
    redis.call('HSET', k, unpack(set))
    local r = list(rems, B .. 'leased') r[#r + 1] = id
    if held then
      -- Indexed now, not with the batch: a workflow that this ends (nothing else active) cancels it at once.
      idx(id, cur[4], 2, 8, cur[5])
      step_held_back(cur[12], at)
    else
      local l = list(adds, B .. 'q:' .. cur[4] .. ':s:' .. st) l[#l + 1] = cur[5] l[#l + 1] = id
    end
    if st ~= asked then otherwise[#otherwise + 1] = i otherwise[#otherwise + 1] = st end
    if cur[12] and terminal(st) then ends[#ends + 1] = { cur[12], id, st, at } end
  else
    otherwise[#otherwise + 1] = i otherwise[#otherwise + 1] = -1
  end
end
flush('ZREM', rems)
flush('ZADD', adds)
for _, e in ipairs(ends) do step_ended(e[1], e[2], e[3], e[4]) end
return otherwise
