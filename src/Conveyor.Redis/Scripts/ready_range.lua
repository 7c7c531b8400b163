local function ready_range(queue, before, limit, found)
  local rk = B .. 'q:' .. queue .. ':ready'
  if redis.call('EXISTS', rk) == 0 then return end
  local band = 17592186044416
  for b = 0, 200 do
    local lo = b * band
    local r = redis.call('ZRANGE', rk, string.format('(%.0f', lo + before), string.format('%.0f', lo),
      'BYSCORE', 'REV', 'LIMIT', 0, limit, 'WITHSCORES')
    for j = 1, #r, 2 do found[#found + 1] = { r[j], tonumber(r[j + 1]) - lo } end
  end
end
local function newest(found, limit)
  table.sort(found, function(x, y) return x[2] > y[2] end)
  local out = {}
  local seen = {}
  for j = 1, #found do
    if #out >= 2 * limit then break end
    local id = found[j][1]
    if not seen[id] then
      seen[id] = true
      out[#out + 1] = id
      out[#out + 1] = string.format('%.0f', found[j][2])
    end
  end
  return out
end
