using Conveyor.Backends;
using Npgsql;

namespace Conveyor.Postgres;

/// <summary>The limit counters (<see cref="ILimitStore"/>) in the tables of migration 006, each call one round trip.
/// A reservation is one upsert (its row lock orders concurrent callers); an acquisition runs under a transaction-scoped
/// advisory lock of its key, so that two workers cannot both count the last free slot.</summary>
/// <remarks>Every call commits without waiting for its WAL flush (synchronous_commit off for the call's implicit
/// transaction, as a fetch does): after a PostgreSQL crash a reservation or a slot may be forgotten, which admits a few
/// tasks early, as the fetches lost in that crash run tasks again.</remarks>
public sealed partial class PostgresBackend : ILimitStore
{
    private const string AsyncCommit = "SELECT set_config('synchronous_commit', 'off', true)";

    /// <inheritdoc />
    public ILimitStore Limits => this;

    /// <inheritdoc />
    public async Task<IReadOnlyList<DateTimeOffset>> ReserveRateSlotsAsync(string key, TimeSpan interval, int count, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var step = LimitTimes.IntervalMicroseconds(interval);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var now = LimitTimes.ToMicroseconds(_time.GetUtcNow());
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(AsyncCommit));
        // The first time is max(now, next free); the key then moves one interval past the last time reserved.
        var reserve = new NpgsqlBatchCommand($"""
            INSERT INTO {_rateLimits} AS r (key, next_free_us) VALUES (@key, @now + @span)
            ON CONFLICT (key) DO UPDATE SET next_free_us = greatest(r.next_free_us, @now) + @span
            RETURNING next_free_us - @span
            """);
        reserve.Parameters.AddWithValue("key", key);
        reserve.Parameters.AddWithValue("now", now);
        reserve.Parameters.AddWithValue("span", step * count);
        batch.BatchCommands.Add(reserve);
        long first;
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            first = reader.GetInt64(0);
        }
        var slots = new DateTimeOffset[count];
        for (var i = 0; i < count; i++)
        {
            slots[i] = LimitTimes.FromMicroseconds(first + (step * i));
        }
        return slots;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<bool>> AcquireConcurrencySlotsAsync(string key, int limit, IReadOnlyList<ConcurrencySlot> slots, string owner,
        TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var granted = new bool[slots.Count];
        if (slots.Count == 0)
        {
            return granted;
        }
        var now = Now();
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        // One implicit transaction (the batch ends with one Sync): the advisory lock holds until its end, so the count
        // and the inserts of two callers of one key never interleave.
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(AsyncCommit));
        var lockKey = new NpgsqlBatchCommand("SELECT pg_advisory_xact_lock(hashtextextended('conveyor.limit.' || @schema || '.' || @key, 0))");
        lockKey.Parameters.AddWithValue("schema", _options.Schema);
        lockKey.Parameters.AddWithValue("key", key);
        batch.BatchCommands.Add(lockKey);
        var expired = new NpgsqlBatchCommand($"DELETE FROM {_concurrencySlots} WHERE key = @key AND expires_at < @now");
        expired.Parameters.AddWithValue("key", key);
        expired.Parameters.AddWithValue("now", now);
        batch.BatchCommands.Add(expired);
        // A task that holds a slot of the key takes it over (new lease, new owner) and counts once; the others get the
        // room left, in the order asked.
        var acquire = new NpgsqlBatchCommand($"""
            WITH req AS (SELECT * FROM unnest(@ids::uuid[], @tokens::bigint[]) WITH ORDINALITY AS r(id, token, ord)),
                 mine AS (SELECT r.ord FROM req r JOIN {_concurrencySlots} s ON s.key = @key AND s.task_id = r.id),
                 fresh AS (SELECT r.ord FROM req r WHERE r.ord NOT IN (SELECT ord FROM mine) ORDER BY r.ord
                           LIMIT greatest(@limit - (SELECT count(*) FROM {_concurrencySlots} WHERE key = @key), 0)),
                 granted AS (SELECT ord FROM mine UNION ALL SELECT ord FROM fresh),
                 taken AS (INSERT INTO {_concurrencySlots} (key, task_id, owner, token, expires_at)
                           SELECT @key, r.id, @owner, r.token, @expires FROM req r WHERE r.ord IN (SELECT ord FROM granted)
                           ON CONFLICT (key, task_id) DO UPDATE SET owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at)
            SELECT ord FROM granted
            """);
        acquire.Parameters.AddWithValue("ids", slots.Select(s => s.TaskId).ToArray());
        acquire.Parameters.AddWithValue("tokens", slots.Select(s => s.Token).ToArray());
        acquire.Parameters.AddWithValue("key", key);
        acquire.Parameters.AddWithValue("limit", (long)limit);
        acquire.Parameters.AddWithValue("owner", owner);
        acquire.Parameters.AddWithValue("expires", now + (long)duration.TotalMilliseconds);
        batch.BatchCommands.Add(acquire);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        // The results of the set_config, the lock and the delete come first.
        while (reader.FieldCount != 1 || reader.GetName(0) != "ord")
        {
            if (!await reader.NextResultAsync(cancellationToken).ConfigureAwait(false))
            {
                throw new InvalidOperationException("The acquisition of concurrency slots returned no result.");
            }
        }
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            granted[reader.GetInt64(0) - 1] = true;
        }
        return granted;
    }

    /// <inheritdoc />
    public async Task ReleaseConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return;
        }
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(AsyncCommit));
        var release = new NpgsqlBatchCommand($"""
            DELETE FROM {_concurrencySlots} s USING unnest(@keys::text[], @ids::uuid[], @tokens::bigint[]) AS u(key, id, token)
            WHERE s.key = u.key AND s.task_id = u.id AND s.token = u.token AND s.owner = @owner
            """);
        AddSlots(release, slots);
        release.Parameters.AddWithValue("owner", owner);
        batch.BatchCommands.Add(release);
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ConcurrencySlot>> ExtendConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, TimeSpan duration,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return [];
        }
        var now = Now();
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(AsyncCommit));
        var extend = new NpgsqlBatchCommand($"""
            UPDATE {_concurrencySlots} s SET expires_at = @expires
            FROM unnest(@keys::text[], @ids::uuid[], @tokens::bigint[]) AS u(key, id, token)
            WHERE s.key = u.key AND s.task_id = u.id AND s.token = u.token AND s.owner = @owner AND s.expires_at >= @now
            RETURNING s.key, s.task_id, s.token
            """);
        AddSlots(extend, slots);
        extend.Parameters.AddWithValue("owner", owner);
        extend.Parameters.AddWithValue("now", now);
        extend.Parameters.AddWithValue("expires", now + (long)duration.TotalMilliseconds);
        batch.BatchCommands.Add(extend);
        var kept = new HashSet<ConcurrencySlot>();
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                kept.Add(new ConcurrencySlot(reader.GetString(0), reader.GetGuid(1), reader.GetInt64(2)));
            }
        }
        return slots.Where(s => !kept.Contains(s)).ToList();
    }

    /// <inheritdoc />
    public async Task<int> ReleaseOwnerAsync(string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(owner);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"DELETE FROM {_concurrencySlots} WHERE owner = @owner");
        command.Parameters.AddWithValue("owner", owner);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<LimitUsage> GetUsageAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            SELECT kind, key, n FROM (
                SELECT 0 AS kind, key, next_free_us AS n FROM {_rateLimits}
                UNION ALL
                SELECT 1, key, count(*) FROM {_concurrencySlots} WHERE expires_at >= @now GROUP BY key) AS usage
            ORDER BY kind, key COLLATE "C"
            """);
        command.Parameters.AddWithValue("now", Now());
        var rates = new List<RateUsage>();
        var concurrency = new List<ConcurrencyUsage>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (reader.GetInt32(0) == 0)
            {
                rates.Add(new RateUsage(reader.GetString(1), LimitTimes.FromMicroseconds(reader.GetInt64(2))));
            }
            else
            {
                concurrency.Add(new ConcurrencyUsage(reader.GetString(1), (int)reader.GetInt64(2)));
            }
        }
        return new LimitUsage(rates, concurrency);
    }

    /// <summary>The slots as three arrays (@keys, @ids, @tokens), sorted so that two calls touching the same rows lock them
    /// in the same order.</summary>
    private static void AddSlots(NpgsqlBatchCommand command, IReadOnlyList<ConcurrencySlot> slots)
    {
        var ordered = slots.OrderBy(s => s.Key, StringComparer.Ordinal).ThenBy(s => s.TaskId).ToArray();
        command.Parameters.AddWithValue("keys", ordered.Select(s => s.Key).ToArray());
        command.Parameters.AddWithValue("ids", ordered.Select(s => s.TaskId).ToArray());
        command.Parameters.AddWithValue("tokens", ordered.Select(s => s.Token).ToArray());
    }
}
