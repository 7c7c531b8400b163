using System.Data.Common;
using System.Globalization;
using System.Text;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>
/// <see cref="ITaskStore.ListAsync"/> and <see cref="ITaskStore.GetQueuesAsync(int, CancellationToken)"/> for a SQL store: filters on state, task
/// and queue, newest first, paged by a cursor that is the last row's <c>seq</c> in decimal (the format every SQL
/// backend has used, so cursors handed out before keep working).
/// <para>
/// A task or queue filter without a state that an index serves is answered by walking the table from the newest row: a
/// name whose tasks are rare and old would make one page read the whole table (a million rows: 175 ms on SQLite, 460 ms
/// on PostgreSQL, at every refresh of a dashboard that shows it). Such a page looks at most <see cref="NameScanWindow"/>
/// sequence numbers; when that window ends before the page is full, the page ends there, with fewer tasks and a cursor
/// that continues below the window (the contract of <see cref="ITaskStore.ListAsync"/>: no match is skipped, and the
/// dashboard says the search stopped early). Indexes on queue and task would avoid the walk, at a fifth of SQLite's
/// enqueue rate (docs/benchmarks.md).
/// </para>
/// </summary>
public static class TaskListing
{
    /// <summary>Largest page; a larger <see cref="TaskQuery.Limit"/> is cut to it, a smaller than 1 raised to 1.</summary>
    public const int MaxLimit = 1000;

    /// <summary>Most sequence numbers (so at most as many rows) one page filtered by task or queue alone looks at:
    /// 50,000. Measured under load (docs/benchmarks.md): 100,000 took 13–17 ms on SQLite and 91–109 ms on PostgreSQL,
    /// whose backward walk fetches each row from the heap.</summary>
    public const long NameScanWindow = 50_000;

    // The parts of QueueCountsSql: exact counts, and the bounded reads of finished, cancelled and expired rows.
    private const int ExactPart = 0;
    private const int FinishedPart = 3;
    private const int CancelledPart = 6;
    private const int ExpiredPart = 7;

    /// <summary>One page of tasks matching <paramref name="query"/>, newest first.</summary>
    /// <exception cref="ArgumentException">The cursor is not one this listing handed out.</exception>
    public static Task<TaskPage> ListAsync(DbConnection connection, SqlDialect dialect, TaskQuery query, CancellationToken cancellationToken) =>
        ListAsync(connection, dialect, query, NameScanWindow, cancellationToken);

    /// <summary>One page of tasks matching <paramref name="query"/>, newest first, a task or queue filter looking at no
    /// more than <paramref name="nameScanWindow"/> sequence numbers.</summary>
    /// <exception cref="ArgumentException">The cursor is not one this listing handed out.</exception>
    public static async Task<TaskPage> ListAsync(DbConnection connection, SqlDialect dialect, TaskQuery query, long nameScanWindow, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(nameScanWindow, 1);
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentNullException.ThrowIfNull(query);
        long? floor = null;
        var rowsBelowFloor = false;
        if (WalksByName(query))
        {
            var (lowest, highest) = await SequenceBoundsAsync(connection, dialect, cancellationToken).ConfigureAwait(false);
            var upper = query.Cursor is { } cursor ? ParseCursor(cursor) : highest + 1;
            if (upper - nameScanWindow > lowest)
            {
                floor = upper - nameScanWindow;
                rowsBelowFloor = true;
            }
        }
        await using var command = connection.CreateCommand();
        var limit = Build(command, dialect, query, floor);
        var items = new List<TaskRecord>(limit);
        long lastSequence = 0;
        var more = false;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            // One row more than the page was asked for: it says whether a next page exists.
            if (items.Count == limit)
            {
                more = true;
                break;
            }
            items.Add(TaskRows.Read(reader, dialect));
            lastSequence = reader.GetInt64(TaskRows.SequenceOrdinal);
        }
        // The window ended before the page filled: the rows below it come next.
        return new TaskPage(items, more ? FormatCursor(lastSequence) : rowsBelowFloor ? FormatCursor(floor!.Value) : null);
    }

    /// <summary>Whether <paramref name="query"/> filters by task or queue with no state whose index leads to the rows:
    /// none, or <c>succeeded</c> (the common end state, which no index holds).</summary>
    public static bool WalksByName(TaskQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        return (query.Task is not null || query.Queue is not null) && query.State is null or TaskState.Succeeded;
    }

    // Each bound in its own subquery: both planners read one end of the primary key for it.
    private static async Task<(long Lowest, long Highest)> SequenceBoundsAsync(DbConnection connection, SqlDialect dialect, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        var tasks = dialect.Table("tasks");
        command.CommandText = $"SELECT (SELECT MIN(seq) FROM {tasks}), (SELECT MAX(seq) FROM {tasks})";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) && !reader.IsDBNull(0)
            ? (reader.GetInt64(0), reader.GetInt64(1))
            : (0, 0);
    }

    /// <summary>Sets the command's text and parameters for <paramref name="query"/>, looking at no row below
    /// <paramref name="floor"/> when given; returns the page size.</summary>
    public static int Build(DbCommand command, SqlDialect dialect, TaskQuery query, long? floor = null)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentNullException.ThrowIfNull(query);
        var limit = Math.Clamp(query.Limit, 1, MaxLimit);
        var sql = new StringBuilder($"SELECT {TaskRows.Columns} FROM {dialect.Table("tasks")} WHERE 1 = 1");
        if (query.State is { } state)
        {
            // The state as a constant, not a parameter: the planners match it to the partial indexes (a generic plan
            // for "state = $1" could use none). The rare states repeat the rare-state index's own predicate, which
            // SQLite needs to see written out before it uses a partial index.
            sql.Append(" AND state = ").Append(((int)state).ToString(CultureInfo.InvariantCulture));
            if (state is not (TaskState.Queued or TaskState.Running or TaskState.Succeeded))
            {
                sql.Append(" AND ").Append(dialect.RareStates);
            }
        }
        if (query.Task is { } task)
        {
            sql.Append(" AND task = ").Append(dialect.Parameter("task"));
            dialect.AddParameter(command, "task", task);
        }
        if (query.Queue is { } queue)
        {
            sql.Append(" AND queue = ").Append(dialect.Parameter("queue"));
            dialect.AddParameter(command, "queue", queue);
        }
        if (query.Cursor is { } cursor)
        {
            sql.Append(" AND seq < ").Append(dialect.Parameter("before"));
            dialect.AddParameter(command, "before", ParseCursor(cursor));
        }
        if (floor is { } lowest)
        {
            sql.Append(" AND seq >= ").Append(dialect.Parameter("floor"));
            dialect.AddParameter(command, "floor", lowest);
        }
        sql.Append(" ORDER BY seq DESC ").Append(dialect.Limit(dialect.Parameter("limit")));
        dialect.AddParameter(command, "limit", limit + 1);
        command.CommandText = sql.ToString();
        return limit;
    }

    /// <summary>The cursor of a page whose last row has this sequence.</summary>
    public static string FormatCursor(long sequence) => sequence.ToString(CultureInfo.InvariantCulture);

    /// <summary>The sequence a cursor stands for: rows below it come next.</summary>
    /// <exception cref="ArgumentException">Not a cursor <see cref="FormatCursor"/> made.</exception>
    public static long ParseCursor(string cursor)
    {
        ArgumentNullException.ThrowIfNull(cursor);
        if (!long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var before))
        {
            throw new ArgumentException($"'{cursor}' is not a cursor returned by this API", nameof(cursor));
        }
        return before;
    }

    /// <summary>Every queue with its pause flag and its task count per state, by name (<see cref="QueueCountsSql"/>), the
    /// finished states counted over at most <see cref="ITaskStore.FinishedCountLimit"/> tasks each.</summary>
    public static Task<IReadOnlyList<QueueStats>> GetQueuesAsync(DbConnection connection, SqlDialect dialect, CancellationToken cancellationToken) =>
        GetQueuesAsync(connection, dialect, ITaskStore.FinishedCountLimit, cancellationToken);

    /// <summary>Every queue with its pause flag and its task count per state, by name, the finished states counted over at
    /// most <paramref name="finishedCountLimit"/> tasks each (<see cref="QueueCountsSql"/>), or, with
    /// <see cref="int.MaxValue"/>, every state exactly by one grouping over the whole table: queues that have tasks but no
    /// row in <c>queues</c> (none should) count as not paused.</summary>
    public static async Task<IReadOnlyList<QueueStats>> GetQueuesAsync(DbConnection connection, SqlDialect dialect, int finishedCountLimit,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentOutOfRangeException.ThrowIfLessThan(finishedCountLimit, 1);
        var queues = new SortedDictionary<string, (bool Paused, Dictionary<TaskState, long> Counts)>(StringComparer.Ordinal);
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = $"SELECT name, paused FROM {dialect.Table("queues")}";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                queues[reader.GetString(0)] = (dialect.ReadFlag(reader, 1), new Dictionary<TaskState, long>());
            }
        }
        // Rows read by each bounded part: a part that read its limit stopped early.
        var read = new Dictionary<int, long>();
        await using (var command = connection.CreateCommand())
        {
            if (finishedCountLimit == int.MaxValue)
            {
                // Everything, exactly: one pass over the table costs less than the partial indexes' walks over all of it.
                command.CommandText = $"SELECT queue, state, count(*), {ExactPart} FROM {dialect.Table("tasks")} GROUP BY queue, state";
            }
            else
            {
                command.CommandText = QueueCountsSql(dialect);
                dialect.AddParameter(command, "limit", finishedCountLimit);
            }
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var name = reader.GetString(0);
                var state = dialect.ReadState(reader, 1);
                var count = reader.GetInt64(2);
                var part = reader.GetInt32(3);
                if (part != ExactPart)
                {
                    read[part] = read.GetValueOrDefault(part) + count;
                }
                // The newest finished tasks give the count of succeeded ones; the others have parts of their own.
                if (part == FinishedPart && state != TaskState.Succeeded)
                {
                    continue;
                }
                if (!queues.TryGetValue(name, out var entry))
                {
                    entry = (false, new Dictionary<TaskState, long>());
                    queues[name] = entry;
                }
                entry.Counts[state] = count;
            }
        }
        var lowerBounds = new List<TaskState>(3);
        foreach (var (part, state) in ((int, TaskState)[])[(FinishedPart, TaskState.Succeeded), (CancelledPart, TaskState.Cancelled), (ExpiredPart, TaskState.Expired)])
        {
            if (read.GetValueOrDefault(part) >= finishedCountLimit)
            {
                lowerBounds.Add(state);
            }
        }
        return queues.Select(q => new QueueStats { Name = q.Key, Paused = q.Value.Paused, Counts = q.Value.Counts, LowerBounds = lowerBounds }).ToList();
    }

    /// <summary>
    /// The statement of <see cref="GetQueuesAsync(DbConnection, SqlDialect, int, CancellationToken)"/>, with one parameter,
    /// <c>limit</c>: rows of (queue, state, count, part), one statement so that every count comes from one snapshot.
    /// <list type="bullet">
    /// <item>Part 0, exact: the states of a queue's depth, each through its partial index, so that the work grows with the
    /// depth and not with the finished rows: queued (1) through <c>tasks_ready</c>, whose leading column is the queue (an
    /// index-only scan on PostgreSQL); running (2) through <c>tasks_leased</c>; scheduled, retrying, dead and pending (0, 4,
    /// 5, 8) through the rare states' index, whose predicate the statement repeats, as SQLite uses a partial index only
    /// when the WHERE clause contains its terms.</item>
    /// <item>Parts 6 and 7: cancelled and expired through the rare states' index, at most <c>limit</c> rows each.</item>
    /// <item>Part 3: the newest <c>limit</c> finished rows by <c>finished_at</c> through <c>tasks_finished</c> (its
    /// predicate is <c>finished_at IS NOT NULL</c> on SQLite and the terminal states on PostgreSQL: both are written),
    /// of which the succeeded ones are counted. Succeeded tasks have no index of their own (every task passes through
    /// that state: an index would cost every completion), so their exact count would read every finished row.</item>
    /// </list>
    /// A bounded part that returns <c>limit</c> rows in all stopped early: its state's counts are lower bounds.
    /// </summary>
    public static string QueueCountsSql(SqlDialect dialect)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        var tasks = dialect.Table("tasks");
        var limit = dialect.Limit(dialect.Parameter("limit"));
        var rare = dialect.RareStates;
        return $"""
            SELECT queue, CAST({StoredStates.Queued} AS SMALLINT), count(*), {ExactPart} FROM {tasks} WHERE state = {StoredStates.Queued} GROUP BY queue
            UNION ALL
            SELECT queue, CAST({StoredStates.Running} AS SMALLINT), count(*), {ExactPart} FROM {tasks} WHERE state = {StoredStates.Running} GROUP BY queue
            UNION ALL
            SELECT queue, state, count(*), {ExactPart} FROM {tasks}
            WHERE state IN ({StoredStates.Scheduled}, {StoredStates.Retrying}, {StoredStates.Dead}, {StoredStates.Pending}) AND {rare} GROUP BY queue, state
            UNION ALL
            SELECT queue, state, count(*), {CancelledPart} FROM (SELECT queue, state FROM {tasks} WHERE state = {StoredStates.Cancelled} AND {rare} {limit}) AS c GROUP BY queue, state
            UNION ALL
            SELECT queue, state, count(*), {ExpiredPart} FROM (SELECT queue, state FROM {tasks} WHERE state = {StoredStates.Expired} AND {rare} {limit}) AS e GROUP BY queue, state
            UNION ALL
            SELECT queue, state, count(*), {FinishedPart} FROM (
                SELECT queue, state FROM {tasks} WHERE finished_at IS NOT NULL AND state IN ({StoredStates.Terminal}) ORDER BY finished_at DESC {limit}
            ) AS f GROUP BY queue, state
            """;
    }

    /// <summary><see cref="ITaskStore.CountWaitingByTaskAsync"/>: one grouped statement over the waiting rows.</summary>
    public static async Task<WaitingTaskCounts> CountWaitingByTaskAsync(DbConnection connection, SqlDialect dialect, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        var counts = new List<WaitingTaskCount>();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT queue, task, state, count(*) FROM {dialect.Table("tasks")} WHERE state IN ({StoredStates.Waiting}) GROUP BY queue, task, state";
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            counts.Add(new WaitingTaskCount(reader.GetString(0), reader.GetString(1), dialect.ReadState(reader, 2), reader.GetInt64(3)));
        }
        return new WaitingTaskCounts(counts, Complete: true);
    }

    /// <summary><see cref="ITaskStore.GetOldestReadyAsync"/>: per queue, the earliest ready time (ETA or retry time, else
    /// enqueue) of its queued tasks, in one grouped statement over the queued rows.</summary>
    public static async Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(DbConnection connection, SqlDialect dialect, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(dialect);
        var oldest = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        await using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT queue, MIN(CASE WHEN not_before IS NOT NULL AND not_before > created_at THEN not_before ELSE created_at END)
            FROM {dialect.Table("tasks")} WHERE state = {dialect.Parameter("state")} GROUP BY queue
            """;
        dialect.AddParameter(command, "state", dialect.StateValue(TaskState.Queued));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (!reader.IsDBNull(1))
            {
                oldest[reader.GetString(0)] = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1));
            }
        }
        return oldest;
    }
}
