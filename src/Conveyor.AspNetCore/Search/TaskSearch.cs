using Conveyor.Backends;

namespace Conveyor.AspNetCore.Search;

/// <summary>
/// The filters of <c>GET /api/v1/tasks</c> that the stores do not index: created between two times, and text in the
/// arguments, result or errors. They are applied here, over the store's own pages (state, task and queue still narrow the
/// store's query), so every backend has them. A search reads at most <see cref="MaxScannedTasks"/> tasks or
/// <see cref="MaxScanTime"/> per request; a page may then hold fewer matches than asked, with a cursor to go on.
/// </summary>
internal sealed record TaskSearch(DateTimeOffset? CreatedAfter, DateTimeOffset? CreatedBefore, string? Text)
{
    /// <summary>Longest <c>text</c> accepted: 200 characters.</summary>
    public const int MaxTextLength = 200;

    /// <summary>Most tasks one request reads from the store: 10,000.</summary>
    public const int MaxScannedTasks = 10_000;

    /// <summary>Longest one request reads from the store: 1 s.</summary>
    public static readonly TimeSpan MaxScanTime = TimeSpan.FromSeconds(1);

    // Stores list newest first by insertion order, which follows creation time up to the clock skew between processes:
    // a listing that reached tasks this much older than createdAfter has no match left.
    private static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(1);

    public bool IsEmpty => CreatedAfter is null && CreatedBefore is null && Text is null;

    /// <summary>Whether <paramref name="task"/> passes the filters.</summary>
    public bool Matches(TaskRecord task)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (CreatedAfter is { } after && task.CreatedAt < after)
        {
            return false;
        }
        if (CreatedBefore is { } before && task.CreatedAt >= before)
        {
            return false;
        }
        return Text is null || Contains(task.Args) || Contains(task.Result) || Contains(task.Id.ToString())
            || (task.Error is { } error && (Contains(error.Type) || Contains(error.Message) || Contains(error.Detail)))
            || task.Errors.Any(e => Contains(e.Error.Message) || Contains(e.Error.Type));
    }

    private bool Contains(string? value) => value is not null && value.Contains(Text!, StringComparison.OrdinalIgnoreCase);

    /// <summary>One page of <paramref name="query"/>'s tasks that match, newest first. The store is asked for no more tasks
    /// than the page still needs, so that its cursor stays exact: a page never skips a match.</summary>
    public async Task<TaskPage> ListAsync(ITaskStore store, TaskQuery query, TimeProvider time, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(time);
        var items = new List<TaskRecord>(query.Limit);
        var started = time.GetTimestamp();
        var scanned = 0;
        var cursor = query.Cursor;
        // createdAfter may be as early as 0001-01-01: the margin must not go below DateTimeOffset.MinValue.
        DateTimeOffset? scanUntil = CreatedAfter is { } createdAfter
            ? (createdAfter - DateTimeOffset.MinValue > ClockSkew ? createdAfter - ClockSkew : DateTimeOffset.MinValue)
            : null;
        while (true)
        {
            var page = await store.ListAsync(query with { Cursor = cursor, Limit = query.Limit - items.Count }, cancellationToken).ConfigureAwait(false);
            scanned += page.Items.Count;
            var exhausted = false;
            foreach (var task in page.Items)
            {
                if (scanUntil is { } after && task.CreatedAt < after)
                {
                    exhausted = true;
                }
                if (Matches(task))
                {
                    items.Add(task);
                }
            }
            cursor = page.NextCursor;
            if (exhausted || cursor is null)
            {
                return new TaskPage(items, null);
            }
            if (items.Count >= query.Limit || scanned >= MaxScannedTasks || time.GetElapsedTime(started) >= MaxScanTime)
            {
                return new TaskPage(items, cursor);
            }
        }
    }
}
