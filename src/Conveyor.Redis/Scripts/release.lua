local now, errjson, atjson, bound = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
-- Returns how many leases were held, then the id and state of each task that ended for good (end_leases' reply).
local reply = { 0 }
local woken = {}
for i = 0, n - 1 do
  local id, token = ARGV[7 + i * 2], ARGV[8 + i * 2]
  local c = lease_of(id)
  if c[1] == '2' and c[2] == token then
    redis.call('ZREM', B .. 'leased', id)
    if c[11] ~= token and c[3] ~= '1' then
      -- A clean hand-back of a lease that never started: its attempt is not spent, and it is not a lapse.
      local st = holds_back(c[14], c[15], c[16]) and 8 or 1
      redis.call('HSET', B .. 't:' .. id, 'state', st, 'attempt', tonumber(c[9]) - 1, 'hist', c[7] .. '|2:' .. c[8] .. '|' .. st .. ':' .. now)
      settled(reply, woken, id, back_in(id, c, st, now))
    else
      settled(reply, woken, id, end_lease(id, c, now, errjson, atjson, bound))
    end
    reply[1] = reply[1] + 1
  end
end
wake(woken)
return reply
