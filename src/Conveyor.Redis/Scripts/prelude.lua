local B = ARGV[1]
local function opt(v) if v == nil or v == '' then return nil end return string.sub(v, 2) end
-- Queued (1) and running (2) have no state index: the ready and leased sets are theirs.
local function idx(id, queue, from, to, seq)
  if from ~= nil and (tostring(from) == '1' or tostring(from) == '2') then from = nil end
  if to ~= nil and (tostring(to) == '1' or tostring(to) == '2') then to = nil end
  if from ~= nil then redis.call('ZREM', B .. 'q:' .. queue .. ':s:' .. from, id) end
  if to ~= nil then redis.call('ZADD', B .. 'q:' .. queue .. ':s:' .. to, seq, id) end
end
local function ready(id, queue, prio, seq)
  redis.call('ZADD', B .. 'q:' .. queue .. ':ready', (100 - tonumber(prio)) * 17592186044416 + tonumber(seq), id)
end
local function terminal(st) return st == 3 or st == 5 or st == 6 or st == 7 end
-- One command for many members (ZADD pairs or ZREM ids), in chunks that stay within Lua's stack.
local function bulk(cmd, key, list)
  for i = 1, #list, 4000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 3999, #list)))
  end
end
local function list(map, key)
  local l = map[key]
  if not l then l = {} map[key] = l end
  return l
end
local function flush(cmd, map) for key, l in pairs(map) do bulk(cmd, key, l) end end
local function append_error(errors, entry)
  if errors then return errors .. '\n' .. entry end
  return entry
end
