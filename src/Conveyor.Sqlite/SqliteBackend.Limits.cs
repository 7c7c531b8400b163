using Conveyor.Backends;

namespace Conveyor.Sqlite;

/// <summary>The limit counters (<see cref="ILimitStore"/>) in the tables of migration 006. Every call is one operation
/// of the writer, so it runs in one write transaction: atomic against this process's other callers and, through the
/// file's write lock, against every other process on the file.</summary>
public sealed partial class SqliteBackend : ILimitStore
{
    /// <inheritdoc />
    public ILimitStore Limits => this;

    /// <inheritdoc />
    public Task<IReadOnlyList<DateTimeOffset>> ReserveRateSlotsAsync(string key, TimeSpan interval, int count, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var step = LimitTimes.IntervalMicroseconds(interval);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        cancellationToken.ThrowIfCancellationRequested();
        return Writer.RunAsync<IReadOnlyList<DateTimeOffset>>(w =>
        {
            var now = LimitTimes.ToMicroseconds(_time.GetUtcNow());
            // The first time is max(now, next free); the key then moves one interval past the last time reserved.
            var command = w.Statement("""
                INSERT INTO rate_limits (key, next_free_us) VALUES ($key, $now + $span)
                ON CONFLICT (key) DO UPDATE SET next_free_us = max(rate_limits.next_free_us, $now) + $span
                RETURNING next_free_us - $span
                """, "$key", "$now", "$span");
            command.Parameters[0].Value = key;
            command.Parameters[1].Value = now;
            command.Parameters[2].Value = step * count;
            var first = (long)command.ExecuteScalar()!;
            var slots = new DateTimeOffset[count];
            for (var i = 0; i < count; i++)
            {
                slots[i] = LimitTimes.FromMicroseconds(first + (step * i));
            }
            return slots;
        });
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<bool>> AcquireConcurrencySlotsAsync(string key, int limit, IReadOnlyList<ConcurrencySlot> slots, string owner,
        TimeSpan duration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        cancellationToken.ThrowIfCancellationRequested();
        return Writer.RunAsync<IReadOnlyList<bool>>(w =>
        {
            var now = Now();
            var expired = w.Statement("DELETE FROM concurrency_slots WHERE key = $key AND expires_at < $now", "$key", "$now");
            expired.Parameters[0].Value = key;
            expired.Parameters[1].Value = now;
            expired.ExecuteNonQuery();
            var count = w.Statement("SELECT count(*) FROM concurrency_slots WHERE key = $key", "$key");
            count.Parameters[0].Value = key;
            var held = (long)count.ExecuteScalar()!;
            // A task that holds a slot of the key takes it over (new lease, new owner) and counts once; another task
            // gets a new row while the key has room.
            var takeOver = w.Statement(
                "UPDATE concurrency_slots SET owner = $owner, token = $token, expires_at = $expires WHERE key = $key AND task_id = $id",
                "$owner", "$token", "$expires", "$key", "$id");
            var insert = w.Statement(
                "INSERT INTO concurrency_slots (key, task_id, owner, token, expires_at) VALUES ($key, $id, $owner, $token, $expires)",
                "$key", "$id", "$owner", "$token", "$expires");
            var expires = now + (long)duration.TotalMilliseconds;
            var granted = new bool[slots.Count];
            for (var i = 0; i < slots.Count; i++)
            {
                var id = IdBytes(slots[i].TaskId);
                takeOver.Parameters[0].Value = owner;
                takeOver.Parameters[1].Value = slots[i].Token;
                takeOver.Parameters[2].Value = expires;
                takeOver.Parameters[3].Value = key;
                takeOver.Parameters[4].Value = id;
                if (takeOver.ExecuteNonQuery() == 1)
                {
                    granted[i] = true;
                }
                else if (held < limit)
                {
                    insert.Parameters[0].Value = key;
                    insert.Parameters[1].Value = id;
                    insert.Parameters[2].Value = owner;
                    insert.Parameters[3].Value = slots[i].Token;
                    insert.Parameters[4].Value = expires;
                    insert.ExecuteNonQuery();
                    held++;
                    granted[i] = true;
                }
            }
            return granted;
        });
    }

    /// <inheritdoc />
    public Task ReleaseConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return Task.CompletedTask;
        }
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(
                "DELETE FROM concurrency_slots WHERE key = $key AND task_id = $id AND owner = $owner AND token = $token",
                "$key", "$id", "$owner", "$token");
            var released = 0;
            foreach (var slot in slots)
            {
                command.Parameters[0].Value = slot.Key;
                command.Parameters[1].Value = IdBytes(slot.TaskId);
                command.Parameters[2].Value = owner;
                command.Parameters[3].Value = slot.Token;
                released += command.ExecuteNonQuery();
            }
            return released;
        });
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ConcurrencySlot>> ExtendConcurrencySlotsAsync(IReadOnlyList<ConcurrencySlot> slots, string owner, TimeSpan duration,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentNullException.ThrowIfNull(owner);
        if (slots.Count == 0)
        {
            return Task.FromResult<IReadOnlyList<ConcurrencySlot>>([]);
        }
        return Writer.RunAsync<IReadOnlyList<ConcurrencySlot>>(w =>
        {
            var now = Now();
            var command = w.Statement("""
                UPDATE concurrency_slots SET expires_at = $expires
                WHERE key = $key AND task_id = $id AND owner = $owner AND token = $token AND expires_at >= $now
                """, "$expires", "$key", "$id", "$owner", "$token", "$now");
            var lost = new List<ConcurrencySlot>();
            foreach (var slot in slots)
            {
                command.Parameters[0].Value = now + (long)duration.TotalMilliseconds;
                command.Parameters[1].Value = slot.Key;
                command.Parameters[2].Value = IdBytes(slot.TaskId);
                command.Parameters[3].Value = owner;
                command.Parameters[4].Value = slot.Token;
                command.Parameters[5].Value = now;
                if (command.ExecuteNonQuery() == 0)
                {
                    lost.Add(slot);
                }
            }
            return lost;
        });
    }

    /// <inheritdoc />
    public Task<int> ReleaseOwnerAsync(string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(owner);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("DELETE FROM concurrency_slots WHERE owner = $owner", "$owner");
            command.Parameters[0].Value = owner;
            return command.ExecuteNonQuery();
        });
    }

    /// <inheritdoc />
    public async Task<LimitUsage> GetUsageAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT 0, key, next_free_us FROM rate_limits
            UNION ALL
            SELECT 1, key, count(*) FROM concurrency_slots WHERE expires_at >= $now GROUP BY key
            ORDER BY 1, 2
            """;
        command.Parameters.AddWithValue("$now", Now());
        var rates = new List<RateUsage>();
        var concurrency = new List<ConcurrencyUsage>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (reader.GetInt64(0) == 0)
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
}
