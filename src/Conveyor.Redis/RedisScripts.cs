namespace Conveyor.Redis;

/// <summary>
/// The Lua scripts behind every operation that changes more than one key. Each runs atomically in Redis,
/// so a fetch, a completion or a reaper pass is one round trip and never half done. Times come from the
/// caller (the backend's TimeProvider) as arguments: the scripts never read Redis TIME, and no key TTL
/// takes part in lease logic.
/// </summary>
/// <remarks>
/// Keys (B = <c>{prefix}:</c>, one hash tag, so one Cluster slot): <c>B t:{id}</c> task hash (<c>m</c>: the
/// immutable message, <see cref="RedisMessageCodec"/>; <c>task</c>, <c>queue</c>, <c>prio</c>, <c>seq</c>, <c>max</c>,
/// <c>key</c> copied out of it for the scripts; and the mutable fields); <c>B q:{queue}:ready</c> ready set (score:
/// priority band, then sequence), which is also the index of queued tasks; <c>B scheduled</c> (score: not-before ms);
/// <c>B leased</c> (score: lease expiry ms), which is also the index of running tasks; <c>B finished</c> (score: finish ms);
/// <c>B q:{queue}:s:{state}</c> for the other states (score: sequence); <c>B n:{task}</c> (score: sequence); no index
/// of all tasks (<see cref="ListAny"/> merges the others in one script); <c>B queues</c> (name → paused 0/1); <c>B idem</c> (idempotency key → id);
/// <c>B seq</c>; channel <c>B wake</c>. Nullable arguments are sent as "" for null and "v" + value otherwise.
/// </remarks>
/// <remarks>
/// A drain is bounded by Redis's one thread, so fetch and completion write as little as they can per task: a fetch
/// pops a range of the ready set and writes one hash and one leased-set entry; a completion writes the hash, and one
/// entry in each of the leased, finished and state sets. The running transition is recorded in the history only when
/// the task leaves running (its time is the <c>started</c> field), queued and running tasks have no index besides the
/// ready and leased sets, and a state is indexed per queue only (a listing across queues merges them).
/// </remarks>
internal static class RedisScripts
{
    private const string Prelude = """
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

        """;

    /// <summary>Fields per message in <see cref="Enqueue"/>.</summary>
    public const int EnqueueFields = 9;

    /// <summary>ARGV: B, now, n, then per message: id, task, queue, prio, max, key?, nb?, exp?, m (the encoded message).
    /// Returns per message {id, created 0/1, state}. Fails whole, before any write, on a duplicate id.</summary>
    public const string Enqueue = Prelude + """
        local now = tonumber(ARGV[2])
        local n = tonumber(ARGV[3])
        local F = 9
        local seen = {}
        for i = 0, n - 1 do
          local id = ARGV[4 + i * F]
          if seen[id] or redis.call('EXISTS', B .. 't:' .. id) == 1 then
            return redis.error_reply('CONVEYOR duplicate task id ' .. id)
          end
          seen[id] = true
        end
        local out = {}
        local woken = {}
        local known = {}
        -- One INCRBY for the batch; an idempotent duplicate leaves a gap, which orders nothing differently.
        local first = redis.call('INCRBY', B .. 'seq', n) - n
        for i = 0, n - 1 do
          local o = 4 + i * F
          local id, task, queue, prio = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
          local key = opt(ARGV[o + 5])
          local existing = false
          if key then existing = redis.call('HGET', B .. 'idem', key) end
          if existing then
            out[#out + 1] = { existing, 0, tonumber(redis.call('HGET', B .. 't:' .. existing, 'state') or '1') }
          else
            local nb = opt(ARGV[o + 6])
            local exp = opt(ARGV[o + 7])
            local state = 1
            if nb and tonumber(nb) > now then state = 0 end
            local seq = first + i + 1
            local k = B .. 't:' .. id
            redis.call('HSET', k, 'm', ARGV[o + 8], 'task', task, 'queue', queue, 'state', state, 'prio', prio,
              'max', ARGV[o + 4], 'seq', seq, 'attempt', 0, 'hist', state .. ':' .. now)
            if nb then redis.call('HSET', k, 'nb', nb) end
            if exp then redis.call('HSET', k, 'exp', exp) end
            if key then
              redis.call('HSET', k, 'key', key)
              redis.call('HSET', B .. 'idem', key, id)
            end
            if not known[queue] then
              redis.call('HSETNX', B .. 'queues', queue, '0')
              known[queue] = true
            end
            redis.call('ZADD', B .. 'n:' .. task, seq, id)
            if state == 0 then
              idx(id, queue, nil, 0, seq)
              redis.call('ZADD', B .. 'scheduled', nb, id)
            else
              ready(id, queue, prio, seq)
              woken[queue] = true
            end
            out[#out + 1] = { id, 1, state }
          end
        end
        for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end
        return out
        """;

    /// <summary>Values per lease in the reply of <see cref="Fetch"/>.</summary>
    public const int FetchFields = 6;

    /// <summary>ARGV: B, now, expires, token, owner, max, nq, queues…. Returns, flat, per lease: id, m, nb, exp, attempt, redel.</summary>
    /// <remarks>Per task one HMGET and one HSET; the sorted sets take one command per batch. The ready set is read with
    /// ZRANGE and trimmed with ZREMRANGEBYRANK rather than ZPOPMIN, whose reply carries every score as a formatted double.</remarks>
    public const string Fetch = Prelude + """
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
              local f = redis.call('HMGET', k, 'm', 'nb', 'exp', 'attempt', 'redel')
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
            end
            left = left - #ids
          end
        end
        if #leased > 0 then bulk('ZADD', B .. 'leased', leased) end
        return out
        """;

    /// <summary>Fields per completion in <see cref="Complete"/>.</summary>
    public const int CompleteFields = 8;

    /// <summary>ARGV: B, n, then per completion: id, token, state, result?, error?, errorEntry?, retryAt?, at. Returns how many settled.</summary>
    /// <remarks>Per task one HMGET and one HSET (an HDEL only when a retried task's not-before must go); the sorted sets
    /// take one bulk command per key and batch.</remarks>
    public const string Complete = Prelude + """
        local n = tonumber(ARGV[2])
        local changed = 0
        local adds, rems = {}, {}
        for i = 0, n - 1 do
          local o = 3 + i * 8
          local id, token, at = ARGV[o], ARGV[o + 1], ARGV[o + 7]
          local k = B .. 't:' .. id
          local cur = redis.call('HMGET', k, 'state', 'token', 'cancel', 'queue', 'seq', 'hist', 'errors', 'started', 'nb', 'redel')
          if cur[1] == '2' and cur[2] == token then
            local asked = tonumber(ARGV[o + 2])
            local st = asked
            -- A retry of a task whose cancel was asked cancels it: the cancel must not be lost.
            if st == 4 and cur[3] == '1' then st = 6 end
            local set = { 'state', st, 'hist', cur[6] .. '|2:' .. cur[8] .. '|' .. st .. ':' .. at }
            if cur[3] == '1' then set[#set + 1] = 'cancel' set[#set + 1] = 0 end
            if cur[10] == '1' then set[#set + 1] = 'redel' set[#set + 1] = 0 end
            local result = opt(ARGV[o + 3])
            if result then set[#set + 1] = 'result' set[#set + 1] = result end
            local err = opt(ARGV[o + 4])
            if err then set[#set + 1] = 'error' set[#set + 1] = err end
            local entry = opt(ARGV[o + 5])
            if entry then set[#set + 1] = 'errors' set[#set + 1] = append_error(cur[7], entry) end
            local nb = opt(ARGV[o + 6]) or at
            if asked == 4 then set[#set + 1] = 'nb' set[#set + 1] = nb elseif cur[9] then redis.call('HDEL', k, 'nb') end
            if terminal(st) then
              set[#set + 1] = 'finished' set[#set + 1] = at
              local l = list(adds, B .. 'finished') l[#l + 1] = at l[#l + 1] = id
            else
              local l = list(adds, B .. 'scheduled') l[#l + 1] = nb l[#l + 1] = id
            end
            redis.call('HSET', k, unpack(set))
            local r = list(rems, B .. 'leased') r[#r + 1] = id
            local l = list(adds, B .. 'q:' .. cur[4] .. ':s:' .. st) l[#l + 1] = cur[5] l[#l + 1] = id
            changed = changed + 1
          end
        end
        flush('ZREM', rems)
        flush('ZADD', adds)
        return changed
        """;

    /// <summary>ARGV: B, expires, n, then id, token pairs. Returns per lease 0 (lost), 1 (held) or 2 (held, cancel asked).</summary>
    public const string Extend = Prelude + """
        local n = tonumber(ARGV[3])
        local out = {}
        for i = 0, n - 1 do
          local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
          local cur = redis.call('HMGET', B .. 't:' .. id, 'state', 'token', 'cancel')
          if cur[1] == '2' and cur[2] == token then
            redis.call('ZADD', B .. 'leased', 'XX', ARGV[2], id)
            if cur[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
          else
            out[#out + 1] = 0
          end
        end
        return out
        """;

    /// <summary>ARGV: B, now, n, then id, token pairs. Returns how many went back to their ready set (keeping their place).</summary>
    public const string Release = Prelude + """
        local now = ARGV[2]
        local n = tonumber(ARGV[3])
        local changed = 0
        for i = 0, n - 1 do
          local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
          local k = B .. 't:' .. id
          local cur = redis.call('HMGET', k, 'state', 'token', 'queue', 'seq', 'prio', 'hist', 'started', 'attempt')
          if cur[1] == '2' and cur[2] == token then
            redis.call('HSET', k, 'state', 1, 'attempt', tonumber(cur[8]) - 1, 'hist', cur[6] .. '|2:' .. cur[7] .. '|1:' .. now)
            redis.call('ZREM', B .. 'leased', id)
            ready(id, cur[3], cur[5], cur[4])
            redis.call('PUBLISH', B .. 'wake', cur[3])
            changed = changed + 1
          end
        end
        return changed
        """;

    /// <summary>ARGV: B, now, error JSON, now as JSON. Requeues (or, on the last attempt or after a cancel request, settles)
    /// every task whose lease expired before now. Returns how many.</summary>
    public const string RequeueExpired = Prelude + """
        local now, errjson, atjson = ARGV[2], ARGV[3], ARGV[4]
        local ids = redis.call('ZRANGEBYSCORE', B .. 'leased', '-inf', '(' .. now)
        local count = 0
        for _, id in ipairs(ids) do
          redis.call('ZREM', B .. 'leased', id)
          local k = B .. 't:' .. id
          local cur = redis.call('HMGET', k, 'state', 'attempt', 'max', 'cancel', 'queue', 'seq', 'prio', 'hist', 'started', 'errors')
          if cur[1] == '2' then
            local entry = '{"attempt":' .. cur[2] .. ',"at":' .. atjson .. ',"error":' .. errjson .. '}'
            local cancelled = cur[4] == '1'
            local ran = cur[8] .. '|2:' .. cur[9] .. '|'
            if cancelled or tonumber(cur[2]) >= tonumber(cur[3]) then
              local st = 5
              if cancelled then
                st = 6
                redis.call('HSET', k, 'state', st, 'finished', now, 'hist', ran .. st .. ':' .. now)
              else
                redis.call('HSET', k, 'state', st, 'finished', now, 'hist', ran .. st .. ':' .. now,
                  'error', errjson, 'errors', append_error(cur[10], entry))
              end
              idx(id, cur[5], 2, st, cur[6])
              redis.call('ZADD', B .. 'finished', now, id)
            else
              redis.call('HSET', k, 'state', 1, 'redel', 1, 'error', errjson, 'errors', append_error(cur[10], entry),
                'hist', ran .. '1:' .. now)
              ready(id, cur[5], cur[7], cur[6])
              redis.call('PUBLISH', B .. 'wake', cur[5])
            end
            count = count + 1
          end
        end
        return count
        """;

    /// <summary>ARGV: B. Returns queue, count pairs of the running tasks (the leased set; running has no state index).</summary>
    public const string RunningByQueue = Prelude + """
        local counts = {}
        for _, id in ipairs(redis.call('ZRANGE', B .. 'leased', 0, -1)) do
          local q = redis.call('HGET', B .. 't:' .. id, 'queue')
          if q then counts[q] = (counts[q] or 0) + 1 end
        end
        local out = {}
        for q, n in pairs(counts) do out[#out + 1] = q out[#out + 1] = n end
        return out
        """;

    // Appends to found the {id, seq} of up to limit entries of a queue's ready set with a sequence below before,
    // highest first within each priority band (the set is ordered by band, then sequence: one range per band).
    private const string ReadyRange = """
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

        """;

    /// <summary>ARGV: B, queue, before (exclusive sequence), limit. Returns, flat, id and sequence of up to limit queued
    /// tasks of the queue with a sequence below before, highest sequence first.</summary>
    public const string ListReady = Prelude + ReadyRange + """
        local found = {}
        ready_range(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), found)
        return newest(found, tonumber(ARGV[4]))
        """;

    /// <summary>ARGV: B, before (exclusive sequence), limit, queue ("" for all). Returns, flat, id and sequence of up to
    /// limit tasks in any state (of the queue, or of every queue) with a sequence below before, highest first.</summary>
    /// <remarks>Reads every index a task can be in — each queue's state sets and ready set, and the leased set — in one
    /// atomic script: read one after the other from the client, a task moving between two of them would be missed.</remarks>
    public const string ListAny = Prelude + ReadyRange + """
        local before = tonumber(ARGV[2])
        local limit = tonumber(ARGV[3])
        local only = ARGV[4]
        local queues = {}
        if only ~= '' then queues = { only } else queues = redis.call('HKEYS', B .. 'queues') end
        local found = {}
        local upper = string.format('(%.0f', before)
        for _, q in ipairs(queues) do
          for _, st in ipairs({ '0', '3', '4', '5', '6', '7' }) do
            local r = redis.call('ZRANGE', B .. 'q:' .. q .. ':s:' .. st, upper, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit, 'WITHSCORES')
            for j = 1, #r, 2 do found[#found + 1] = { r[j], tonumber(r[j + 1]) } end
          end
          ready_range(q, before, limit, found)
        end
        for _, id in ipairs(redis.call('ZRANGE', B .. 'leased', 0, -1)) do
          local f = redis.call('HMGET', B .. 't:' .. id, 'seq', 'queue')
          if f[1] and (only == '' or f[2] == only) and tonumber(f[1]) < before then
            found[#found + 1] = { id, tonumber(f[1]) }
          end
        end
        return newest(found, limit)
        """;

    /// <summary>ARGV: B, now. Makes scheduled and retrying tasks due by now ready. Returns how many.</summary>
    public const string Promote = Prelude + """
        local now = ARGV[2]
        local ids = redis.call('ZRANGEBYSCORE', B .. 'scheduled', '-inf', now)
        local count = 0
        local woken = {}
        for _, id in ipairs(ids) do
          redis.call('ZREM', B .. 'scheduled', id)
          local k = B .. 't:' .. id
          local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'prio', 'hist')
          if cur[1] == '0' or cur[1] == '4' then
            redis.call('HSET', k, 'state', 1, 'hist', cur[5] .. '|1:' .. now)
            idx(id, cur[2], cur[1], 1, cur[3])
            ready(id, cur[2], cur[4], cur[3])
            woken[cur[2]] = true
            count = count + 1
          end
        end
        for q in pairs(woken) do redis.call('PUBLISH', B .. 'wake', q) end
        return count
        """;

    /// <summary>ARGV: B, id, now. Returns 0 not found, 1 cancelled, 2 requested, 3 already finished.</summary>
    public const string Cancel = Prelude + """
        local id, now = ARGV[2], ARGV[3]
        local k = B .. 't:' .. id
        local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'hist')
        if not cur[1] then return 0 end
        local st = cur[1]
        if st == '0' or st == '1' or st == '4' then
          if st == '1' then redis.call('ZREM', B .. 'q:' .. cur[2] .. ':ready', id) else redis.call('ZREM', B .. 'scheduled', id) end
          redis.call('HSET', k, 'state', 6, 'finished', now, 'hist', cur[4] .. '|6:' .. now)
          idx(id, cur[2], st, 6, cur[3])
          redis.call('ZADD', B .. 'finished', now, id)
          return 1
        end
        if st == '2' then
          redis.call('HSET', k, 'cancel', 1)
          return 2
        end
        return 3
        """;

    /// <summary>ARGV: B, id, now. Returns 0 not found, 1 requeued, 2 not retryable.</summary>
    public const string Retry = Prelude + """
        local id, now = ARGV[2], ARGV[3]
        local k = B .. 't:' .. id
        local cur = redis.call('HMGET', k, 'state', 'queue', 'seq', 'prio', 'hist')
        if not cur[1] then return 0 end
        local st = cur[1]
        if st ~= '5' and st ~= '6' and st ~= '7' then return 2 end
        redis.call('HDEL', k, 'finished', 'nb', 'exp')
        redis.call('HSET', k, 'state', 1, 'attempt', 0, 'cancel', 0, 'redel', 0, 'hist', cur[5] .. '|1:' .. now)
        redis.call('ZREM', B .. 'finished', id)
        idx(id, cur[2], st, 1, cur[3])
        ready(id, cur[2], cur[4], cur[3])
        redis.call('PUBLISH', B .. 'wake', cur[2])
        return 1
        """;

    /// <summary>ARGV: B, before, max. Deletes up to max tasks finished before the time, with their index entries. Returns how many.</summary>
    public const string Purge = Prelude + """
        local ids = redis.call('ZRANGEBYSCORE', B .. 'finished', '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
        for _, id in ipairs(ids) do
          local k = B .. 't:' .. id
          local cur = redis.call('HMGET', k, 'queue', 'task', 'state', 'key')
          redis.call('ZREM', B .. 'finished', id)
          if cur[1] then
            redis.call('ZREM', B .. 'n:' .. cur[2], id)
            idx(id, cur[1], cur[3], nil, nil)
            if cur[4] and redis.call('HGET', B .. 'idem', cur[4]) == id then redis.call('HDEL', B .. 'idem', cur[4]) end
            redis.call('DEL', k)
          end
        end
        return #ids
        """;

    /// <summary>ARGV: B, name, owner, now, expires. Returns 1 when owner holds the leadership after the call.</summary>
    public const string AcquireLeadership = Prelude + """
        local k = B .. 'leader:' .. ARGV[2]
        local cur = redis.call('HMGET', k, 'owner', 'exp')
        if (not cur[1]) or cur[1] == ARGV[3] or tonumber(cur[2]) < tonumber(ARGV[4]) then
          redis.call('HSET', k, 'owner', ARGV[3], 'exp', ARGV[5])
          return 1
        end
        return 0
        """;

    /// <summary>ARGV: B, name, owner. Deletes the leadership if owner holds it.</summary>
    public const string ReleaseLeadership = Prelude + """
        local k = B .. 'leader:' .. ARGV[2]
        if redis.call('HGET', k, 'owner') == ARGV[3] then redis.call('DEL', k) return 1 end
        return 0
        """;
}
