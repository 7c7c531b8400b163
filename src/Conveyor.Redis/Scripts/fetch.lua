local now, expires, token, owner = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local left = tonumber(ARGV[6])
local nq = tonumber(ARGV[7])
local out = {}
local leased = {}
for qi = 1, nq do
  if left <= 0 then break end
  local queue = ARGV[7 + qi]
  if redis.call('HGET', B .. 'queues', queue) ~= '1' then
    local rk = B .. 'q:' .. queue .. ':ready'
    local ids = redis.call('ZRANGE', rk, 0, left - 1)
    if #ids > 0 then redis.call('ZREMRANGEBYRANK', rk, 0, #ids - 1) end
    for _, id in ipairs(ids) do
      local k = B .. 't:' .. id
      local f = redis.call('HMGET', k, 'm', 'nb', 'exp', 'attempt', 'redel', 'lapses', 'hdr')
      local attempt = tonumber(f[4]) + 1
      redis.call('HSET', k, 'state', 2, 'token', token, 'owner', owner, 'started', now, 'attempt', attempt)
      leased[#leased + 1] = expires
      leased[#leased + 1] = id
      out[#out + 1] = id
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
      out[#out + 1] = f[3]
      out[#out + 1] = attempt
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = f[7]
    end
    left = left - #ids
  end
end
if #leased > 0 then bulk('ZADD', B .. 'leased', leased) end
return out
