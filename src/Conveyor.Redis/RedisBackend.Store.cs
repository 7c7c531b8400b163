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
        return fields.Length == 0 ? null : ReadRecord(fields);
    }

    /// <inheritdoc />
    public async Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, 1000);
        var before = double.PositiveInfinity;
        if (query.Cursor is { } cursor)
        {
            if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
            {
                throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(query));
            }
            before = seq;
        }
        if (query.State == TaskState.Running)
        {
            return await ListRunningAsync(query, limit, before, cancellationToken).ConfigureAwait(false);
        }
        // The narrowest index that the filter allows; other filters are checked on the records.
        var index = (query.Queue, query.State) switch
        {
            ({ } q, { } s) => $"{_base}q:{q}:s:{(int)s}",
            (null, { } s) => $"{_base}s:{(int)s}",
            ({ } q, null) => $"{_base}q:{q}:all",
            _ => query.Task is { } t ? $"{_base}n:{t}" : _base + "all",
        };
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var items = new List<(long Seq, TaskRecord Record)>(limit + 1);
        var chunk = limit + 1;
        while (items.Count <= limit)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var entries = await db.SortedSetRangeByScoreWithScoresAsync(
                index, double.NegativeInfinity, before, Exclude.Stop, Order.Descending, 0, chunk).ConfigureAwait(false);
            if (entries.Length == 0)
            {
                break;
            }
            var batch = db.CreateBatch();
            var reads = entries.Select(e => batch.HashGetAllAsync(_base + "t:" + (string)e.Element!)).ToArray();
            batch.Execute();
            for (var i = 0; i < entries.Length && items.Count <= limit; i++)
            {
                var fields = await reads[i].ConfigureAwait(false);
                before = entries[i].Score;
                if (fields.Length == 0)
                {
                    continue;
                }
                var record = ReadRecord(fields);
                if ((query.State is null || record.State == query.State)
                    && (query.Queue is null || record.Queue == query.Queue)
                    && (query.Task is null || record.Task == query.Task))
                {
                    items.Add(((long)entries[i].Score, record));
                }
            }
            if (entries.Length < chunk)
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

    /// <summary>Running tasks have no state index (see <see cref="RedisScripts"/>): they are the leased set, which is
    /// bounded by the leases workers hold (their prefetch), so it is read whole and sorted here.</summary>
    private async Task<TaskPage> ListRunningAsync(TaskQuery query, int limit, double before, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var ids = await db.SortedSetRangeByRankAsync(_base + "leased").ConfigureAwait(false);
        var batch = db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAllAsync(_base + "t:" + (string)id!)).ToArray();
        batch.Execute();
        var items = new List<(long Seq, TaskRecord Record)>();
        foreach (var read in reads)
        {
            var fields = await read.ConfigureAwait(false);
            if (fields.Length == 0)
            {
                continue;
            }
            var seq = (long)fields.First(f => f.Name == "seq").Value;
            var record = ReadRecord(fields);
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

    private static TaskRecord ReadRecord(HashEntry[] entries)
    {
        var f = new Dictionary<string, string>(entries.Length, StringComparer.Ordinal);
        foreach (var e in entries)
        {
            f[(string)e.Name!] = (string)e.Value!;
        }
        string? S(string name) => f.TryGetValue(name, out var v) ? v : null;
        long? L(string name) => f.TryGetValue(name, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : null;
        DateTimeOffset? T(string name) => L(name) is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
        var errors = TaskHistoryText.ParseErrors(S("errors"));
        return new TaskRecord
        {
            Id = Guid.Parse(f["id"]),
            Task = f["task"],
            Queue = f["queue"],
            State = (TaskState)int.Parse(f["state"], CultureInfo.InvariantCulture),
            Priority = (int)(L("prio") ?? 0),
            Args = S("args"),
            Result = S("result"),
            Error = S("error") is { } error ? JsonSerializer.Deserialize<TaskError>(error, ConveyorJson.Options) : null,
            Errors = errors,
            Attempts = (int)(L("attempt") ?? 0),
            MaxAttempts = (int)(L("max") ?? 0),
            CreatedAt = T("created") ?? default,
            NotBefore = T("nb"),
            ExpiresAt = T("exp"),
            StartedAt = T("started"),
            FinishedAt = T("finished"),
            IdempotencyKey = S("key"),
            Headers = DeserializeHeaders(S("headers")),
            WorkerId = S("owner"),
            CancelRequested = S("cancel") == "1",
            Transitions = TaskHistoryText.ParseTransitions(S("hist")),
        };
    }


    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var queues = await db.HashGetAllAsync(_base + "queues").ConfigureAwait(false);
        // ZCARD of each queue's state indexes, all in one pipelined batch: O(1) each.
        var batch = db.CreateBatch();
        var counts = queues.Select(q => AllStates.Select(s => s == TaskState.Running
            ? Task.FromResult(0L)
            : batch.SortedSetLengthAsync($"{_base}q:{q.Name}:s:{(int)s}")).ToArray()).ToArray();
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
    public async Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken)
    {
        if (maxCount <= 0)
        {
            return 0;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RedisScripts.Purge, [_base, Ms(finishedBefore), maxCount]).ConfigureAwait(false);
    }
}
