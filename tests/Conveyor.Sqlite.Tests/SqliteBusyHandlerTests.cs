using System.Diagnostics;
using Conveyor.Backends;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>The writer's busy handler: installed through the native API, and a writer blocked by another process's
/// write lock goes on within a couple of milliseconds of its release (SQLite's own handler sleeps up to 25 ms then).</summary>
public sealed class SqliteBusyHandlerTests
{
    [Fact]
    public void The_handler_installs_through_the_native_library()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();

        Assert.True(SqliteBusyHandler.TryInstall(connection, TimeSpan.FromSeconds(1)), "sqlite3_busy_handler could not be called: the writer falls back to busy_timeout");
    }

    [Fact]
    public async Task A_blocked_write_goes_on_within_milliseconds_of_the_lock_being_released()
    {
        var factory = new SqliteTestBackend();
        var backend = (SqliteBackend)await factory.CreateAsync(TimeProvider.System);
        try
        {
            await backend.Queue.EnqueueAsync([NewMessage()], CancellationToken.None);
            var delays = new List<TimeSpan>();
            for (var trial = 0; trial < 5; trial++)
            {
                await using var other = new SqliteConnection($"Data Source={backend.DatabasePath};Pooling=False");
                await other.OpenAsync();
                await using (var begin = other.CreateCommand())
                {
                    begin.CommandText = "BEGIN IMMEDIATE";
                    await begin.ExecuteNonQueryAsync();
                }
                var enqueue = backend.Queue.EnqueueAsync([NewMessage()], CancellationToken.None);
                // Held long enough for SQLite's own handler to be in its 15–25 ms sleeps.
                await Task.Delay(70);
                Assert.False(enqueue.IsCompleted, "the enqueue did not wait for the other connection's write lock");
                var released = Stopwatch.StartNew();
                await using (var commit = other.CreateCommand())
                {
                    commit.CommandText = "COMMIT";
                    await commit.ExecuteNonQueryAsync();
                }
                await enqueue;
                delays.Add(released.Elapsed);
            }
            delays.Sort();
            // Against a connection without the handler (Microsoft.Data.Sqlite's retries on SQLITE_BUSY), measured in the
            // same run, so that a loaded machine, which delays both, does not decide the outcome.
            var own = new List<TimeSpan>();
            for (var trial = 0; trial < 5; trial++)
            {
                own.Add(await DelayAfterReleaseWithSqlitesHandlerAsync(backend.DatabasePath));
            }
            own.Sort();
            Assert.True(delays[2] < own[2] && delays[2] < TimeSpan.FromMilliseconds(25),
                $"median {delays[2].TotalMilliseconds:F1} ms after release (without the handler: {own[2].TotalMilliseconds:F1} ms); all: {Ms(delays)}; without: {Ms(own)}");
        }
        finally
        {
            await factory.DisposeAsync(backend);
        }
    }

    private static string Ms(IEnumerable<TimeSpan> delays) =>
        string.Join(", ", delays.Select(d => d.TotalMilliseconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)));

    // A write on a connection without the writer's handler, blocked by another connection's write lock for 70 ms: how
    // long after the lock's release it goes on.
    private static async Task<TimeSpan> DelayAfterReleaseWithSqlitesHandlerAsync(string path)
    {
        await using var other = new SqliteConnection($"Data Source={path};Pooling=False");
        await other.OpenAsync();
        await using var blocked = new SqliteConnection($"Data Source={path};Pooling=False;Default Timeout=5");
        await blocked.OpenAsync();
        await using (var begin = other.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            await begin.ExecuteNonQueryAsync();
        }
        var write = Task.Run(() =>
        {
            using var command = blocked.CreateCommand();
            command.CommandText = "BEGIN IMMEDIATE; ROLLBACK;";
            command.ExecuteNonQuery();
        });
        await Task.Delay(70);
        Assert.False(write.IsCompleted, "the write did not wait for the other connection's write lock");
        var released = Stopwatch.StartNew();
        await using (var commit = other.CreateCommand())
        {
            commit.CommandText = "COMMIT";
            await commit.ExecuteNonQueryAsync();
        }
        await write;
        return released.Elapsed;
    }

    private static TaskMessage NewMessage() => new() { Id = Guid.CreateVersion7(), Task = "test.busy", CreatedAt = DateTimeOffset.UtcNow };
}
