local owner, now = ARGV[2], ARGV[3]
-- The leased set holds only the leases held now: the scan reads no queued or finished task.
local ids = {}
for _, id in ipairs(redis.call('ZRANGE', B .. 'leased', 0, -1)) do
  if redis.call('HGET', B .. 't:' .. id, 'owner') == owner then ids[#ids + 1] = id end
end
return end_leases(ids, now, ARGV[4], ARGV[5], ARGV[6])
