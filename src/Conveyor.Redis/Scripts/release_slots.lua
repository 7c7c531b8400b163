local owner, n = ARGV[2], tonumber(ARGV[3])
local released = 0
for i = 0, n - 1 do
  local key, id, token = ARGV[4 + i * 3], ARGV[5 + i * 3], ARGV[6 + i * 3]
  local z, h = slot_keys(key)
  local holder = owner .. '|' .. token
  if redis.call('HGET', h, id) == holder then
    drop_slot(key, id, holder)
    released = released + 1
  end
end
return released
