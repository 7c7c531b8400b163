-- Concurrency slots of a key K: B lim:c:K (zset: task id → expiry ms), B lim:ch:K (hash: task id → "owner|token"),
-- B lim:o:{owner} (set: "K\n" .. task id of each slot the owner holds; the id is the last 36 characters), and
-- B lim:ckeys (set of the keys that may hold slots). A slot is live while its expiry is not before now.
local function slot_keys(key) return B .. 'lim:c:' .. key, B .. 'lim:ch:' .. key end
local function holder_owner(holder) return string.match(holder, '^(.*)|%-?%d+$') end
local function member(key, id) return key .. '\n' .. id end
-- Frees the slot of id in key, whoever holds it.
local function drop_slot(key, id, holder)
  local z, h = slot_keys(key)
  redis.call('ZREM', z, id)
  redis.call('HDEL', h, id)
  if holder then redis.call('SREM', B .. 'lim:o:' .. holder_owner(holder), member(key, id)) end
end
