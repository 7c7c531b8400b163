using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

public sealed partial class RedisBackend
{
    private static readonly TaskState[] AllStates = Enum.GetValues<TaskState>();

    /// <inheritdoc />
    public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var fields = await db.HashGetAllAsync(_base + "t:" + IdText(taskId)).ConfigureAwait(false);
        return fields.Length == 0 ? null : ReadRecord(taskId, fields).Record;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyDictionary<Guid, TaskState>> GetStatesAsync(IReadOnlyCollection<Guid> taskIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var ids = taskIds.ToArray();
        var batch = db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAsync(_base + "t:" + IdText(id), "state")).ToArray();
        batch.Execute();
        var states = new Dictionary<Guid, TaskState>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            var state = await reads[i].ConfigureAwait(false);
            if (!state.IsNull)
            {
                states[ids[i]] = (TaskState)(int)state;
            }
        }
        return states;
    }

    /// <summary>Sequences are below 2^44 (the ready set's priority band): the bound of a listing without a cursor.</summary>
    private const long SequenceBound = 17592186044416;

    /// <inheritdoc />
    public async Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var before = SequenceBound;
        if (query.Cursor is { } cursor)
        {
            if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out before) || before > SequenceBound)
            {
                throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
            }
        }
        if (query.State == TaskState.Running)
        {
            return await ListRunningAsync(query, limit, before, cancellationToken).ConfigureAwait(false);
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        // The narrowest indexes the filter allows, newest first; other filters are checked on the records. States are
        // indexed per queue only (queued by the ready set), so a state across queues merges one index per queue.
        IReadOnlyList<string> queues = query.Queue is { } one ? [one]
            : query.State is null ? []
            : (await db.HashKeysAsync(_base + "queues").ConfigureAwait(false)).Select(q => (string)q!).ToArray();
        var sources = query switch
        {
            { State: TaskState.Queued } => queues.Select(q => (IndexRange)((b, n) => ReadyRangeAsync(db, q, b, n))).ToArray(),
            { State: { } s } => queues.Select(q => ScoreRange(db, $"{_base}q:{q}:s:{(int)s}")).ToArray(),
            { Task: { } t } => [ScoreRange(db, $"{_base}n:{t}")],
            // No state and no task name: every index of the queue (or of all), merged in one atomic script.
            _ => [(b, n) => ScriptRangeAsync(db, RedisScripts.ListAny, [_base, b, n, query.Queue ?? ""])],
        };
        var items = new List<(long Seq, TaskRecord Record)>(limit + 1);
        var chunk = limit + 1;
        while (items.Count <= limit && sources.Length > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var ranges = await Task.WhenAll(sources.Select(source => source(before, chunk))).ConfigureAwait(false);
            // A task that changed state between two reads can be in two ranges: it counts once.
            var candidates = ranges.SelectMany(r => r).DistinctBy(e => e.Id).OrderByDescending(e => e.Seq).Take(chunk).ToArray();
            if (candidates.Length == 0)
            {
                break;
            }
            var batch = db.CreateBatch();
            var reads = candidates.Select(e => batch.HashGetAllAsync(_base + "t:" + e.Id)).ToArray();
            batch.Execute();
            for (var i = 0; i < candidates.Length && items.Count <= limit; i++)
            {
                var fields = await reads[i].ConfigureAwait(false);
                before = candidates[i].Seq;
                if (fields.Length == 0)
                {
                    continue;
                }
                var (record, _) = ReadRecord(Guid.Parse(candidates[i].Id), fields);
                if ((query.State is null || record.State == query.State)
                    && (query.Queue is null || record.Queue == query.Queue)
                    && (query.Task is null || record.Task == query.Task))
                {
                    items.Add((candidates[i].Seq, record));
                }
            }
            if (ranges.All(r => r.Length < chunk) && candidates.Length == ranges.SelectMany(r => r).DistinctBy(e => e.Id).Count())
            {
                break;
            }
        }
        var more = items.Count > limit;
        if (more)
        {
            items.RemoveAt(items.Count - 1);
        }
        return new TaskPage(
            items.Select(i => i.Record).ToList(),
            more ? items[^1].Seq.ToString(CultureInfo.InvariantCulture) : null);
    }

    /// <summary>Up to <c>count</c> entries of an index with a sequence below <c>before</c>, highest first.</summary>
    private delegate Task<(string Id, long Seq)[]> IndexRange(long before, int count);

    private static IndexRange ScoreRange(IDatabase db, string index) => async (before, count) =>
    {
        var entries = await db.SortedSetRangeByScoreWithScoresAsync(
            index, double.NegativeInfinity, before, Exclude.Stop, Order.Descending, 0, count).ConfigureAwait(false);
        return entries.Select(e => ((string)e.Element!, (long)e.Score)).ToArray();
    };

    private Task<(string Id, long Seq)[]> ReadyRangeAsync(IDatabase db, string queue, long before, int count) =>
        ScriptRangeAsync(db, RedisScripts.ListReady, [_base, queue, before, count]);

    /// <summary>A listing script's flat id, sequence reply as entries.</summary>
    private async Task<(string Id, long Seq)[]> ScriptRangeAsync(IDatabase db, string script, RedisValue[] args)
    {
        var reply = (RedisResult[])(await RunAsync(db, script, args).ConfigureAwait(false))!;
        var entries = new (string, long)[reply.Length / 2];
        for (var i = 0; i < entries.Length; i++)
        {
            entries[i] = ((string)reply[2 * i]!, long.Parse((string)reply[(2 * i) + 1]!, CultureInfo.InvariantCulture));
        }
        return entries;
    }

    /// <summary>Running tasks have no state index (see <see cref="RedisScripts"/>): they are the leased set, which is
    /// bounded by the leases workers hold (their prefetch), so it is read whole and sorted here.</summary>
    private async Task<TaskPage> ListRunningAsync(TaskQuery query, int limit, long before, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var ids = await db.SortedSetRangeByRankAsync(_base + "leased").ConfigureAwait(false);
        var batch = db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAllAsync(_base + "t:" + (string)id!)).ToArray();
        batch.Execute();
        var items = new List<(long Seq, TaskRecord Record)>();
        for (var i = 0; i < ids.Length; i++)
        {
            var fields = await reads[i].ConfigureAwait(false);
            if (fields.Length == 0)
            {
                continue;
            }
            var (record, seq) = ReadRecord(Guid.Parse((string)ids[i]!), fields);
            if (seq < before && record.State == TaskState.Running
                && (query.Queue is null || record.Queue == query.Queue)
                && (query.Task is null || record.Task == query.Task))
            {
                items.Add((seq, record));
            }
        }
        items.Sort((x, y) => y.Seq.CompareTo(x.Seq));
        var more = items.Count > limit;
        var page = items.Take(limit).ToList();
        return new TaskPage(page.Select(i => i.Record).ToList(), more ? page[^1].Seq.ToString(CultureInfo.InvariantCulture) : null);
    }

    /// <summary>A task hash as a record, and its sequence.</summary>
    private static (TaskRecord Record, long Seq) ReadRecord(Guid id, HashEntry[] entries)
    {
        var f = new Dictionary<string, string>(entries.Length, StringComparer.Ordinal);
        foreach (var e in entries)
        {
            f[(string)e.Name!] = (string)e.Value!;
        }
        string? S(string name) => f.TryGetValue(name, out var v) ? v : null;
        long? L(string name) => f.TryGetValue(name, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : null;
        DateTimeOffset? T(string name) => L(name) is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
        var message = RedisMessageCodec.Decode(S("m"), id, T("nb"), T("exp"), S("hdr"));
        var state = (TaskState)int.Parse(f["state"], CultureInfo.InvariantCulture);
        var running = state == TaskState.Running;
        // The running transition is written when the task leaves running (RedisScripts): until then it is the start time.
        var history = running ? S("hist") + "|" + TaskHistoryText.FormatTransition(TaskState.Running, L("started") ?? 0) : S("hist");
        var record = new TaskRecord
        {
            Id = id,
            Task = message.Task,
            Queue = message.Queue,
            State = state,
            Priority = message.Priority,
            Args = message.Args,
            Result = S("result"),
            Error = S("error") is { } error ? JsonSerializer.Deserialize<TaskError>(error, ConveyorJson.Options) : null,
            Errors = TaskHistoryText.ParseErrors(S("errors")),
            Attempts = (int)(L("attempt") ?? 0),
            MaxAttempts = message.MaxAttempts,
            Retry = message.Retry,
            CreatedAt = message.CreatedAt,
            NotBefore = message.NotBefore,
            ExpiresAt = message.ExpiresAt,
            StartedAt = T("started"),
            FinishedAt = T("finished"),
            IdempotencyKey = message.IdempotencyKey,
            Headers = message.Headers,
            // The owner stays in the hash after the lease ends: the worker of the last attempt, null before the first.
            WorkerId = S("owner"),
            CancelRequested = S("cancel") == "1",
            Transitions = TaskHistoryText.ParseTransitions(history),
        };
        return (record, L("seq") ?? 0);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var queues = await db.HashGetAllAsync(_base + "queues").ConfigureAwait(false);
        // ZCARD of each queue's state indexes, all in one pipelined batch: O(1) each.
        var batch = db.CreateBatch();
        var counts = queues.Select(q => AllStates.Select(s => s switch
        {
            TaskState.Running => Task.FromResult(0L),
            TaskState.Queued => batch.SortedSetLengthAsync($"{_base}q:{q.Name}:ready"),
            _ => batch.SortedSetLengthAsync($"{_base}q:{q.Name}:s:{(int)s}"),
        }).ToArray()).ToArray();
        var running = batch.ScriptEvaluateAsync(RedisScripts.RunningByQueue, [_routeKey], [_base]);
        batch.Execute();
        var runningByQueue = new Dictionary<string, long>(StringComparer.Ordinal);
        var pairs = (RedisResult[])(await running.ConfigureAwait(false))!;
        for (var p = 0; p + 1 < pairs.Length; p += 2)
        {
            runningByQueue[(string)pairs[p]!] = (long)pairs[p + 1];
        }
        var stats = new List<QueueStats>(queues.Length);
        for (var i = 0; i < queues.Length; i++)
        {
            var byState = new Dictionary<TaskState, long>();
            for (var s = 0; s < AllStates.Length; s++)
            {
                var n = AllStates[s] == TaskState.Running
                    ? runningByQueue.GetValueOrDefault((string)queues[i].Name!)
                    : await counts[i][s].ConfigureAwait(false);
                if (n > 0)
                {
                    byState[AllStates[s]] = n;
                }
            }
            stats.Add(new QueueStats { Name = (string)queues[i].Name!, Paused = queues[i].Value == "1", Counts = byState });
        }
        stats.Sort((x, y) => string.CompareOrdinal(x.Name, y.Name));
        return stats;
    }

    /// <inheritdoc />
    /// <remarks>Reads the head of each queue's ready set (one script, one step per queue): the next task to run, which is the
    /// oldest ready one unless a higher priority overtook older tasks.</remarks>
    public async Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var pairs = (RedisResult[])(await db.ScriptEvaluateAsync(RedisScripts.OldestReady, [_routeKey], [_base]).ConfigureAwait(false))!;
        var oldest = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        for (var p = 0; p + 1 < pairs.Length; p += 2)
        {
            oldest[(string)pairs[p]!] = DateTimeOffset.FromUnixTimeMilliseconds((long)pairs[p + 1]);
        }
        return oldest;
    }

    /// <inheritdoc />
    public async Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        if (maxCount <= 0)
        {
            return 0;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.Purge, [_base, Ms(finishedBefore), maxCount]).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(taskIds);
        if (!state.IsTerminal())
        {
            throw new ArgumentOutOfRangeException(nameof(state), state, "Only tasks in a terminal state can be deleted.");
        }
        if (taskIds.Count == 0)
        {
            return 0;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        // One script per call, as retention's: the caller's batch bounds how long it holds Redis's one thread.
        var args = new RedisValue[taskIds.Count + 2];
        args[0] = _base;
        args[1] = (int)state;
        var i = 2;
        foreach (var id in taskIds)
        {
            args[i++] = IdText(id);
        }
        return (int)await RunAsync(db, RedisScripts.Delete, args).ConfigureAwait(false);
    }
}
