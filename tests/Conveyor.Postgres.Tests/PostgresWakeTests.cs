using System.Diagnostics;
using Conveyor.Backends;

namespace Conveyor.Postgres.Tests;

/// <summary>Wake-ups across processes: two backend instances on one schema stand for two processes.</summary>
public sealed class PostgresWakeTests
{
    [Fact]
    public async Task An_enqueue_through_one_instance_wakes_a_fetch_waiting_in_another()
    {
        var schema = "t_" + Guid.NewGuid().ToString("N");
        var producer = new PostgresBackend(new PostgresBackendOptions { ConnectionString = PostgresTestBackend.ConnectionString, Schema = schema });
        // Named, so that the test can see in pg_stat_activity when the consumer has looked and is waiting.
        var consumerName = "wake-test-" + Guid.NewGuid().ToString("N");
        var consumer = new PostgresBackend(new PostgresBackendOptions
        {
            ConnectionString = PostgresConnectionString.Normalize(PostgresTestBackend.ConnectionString) + ";Application Name=" + consumerName,
            Schema = schema,
        });
        try
        {
            await producer.MigrateAsync(CancellationToken.None);
            // The fetch would wait 60 s without a NOTIFY (PostgreSQL fetches never poll).
            var waiting = consumer.FetchAsync(new FetchRequest
            {
                WorkerId = "w",
                Queues = [new QueueWeight(QueueNames.Default)],
                MaxCount = 1,
                LeaseDuration = TimeSpan.FromMinutes(1),
                MaxWait = TimeSpan.FromSeconds(60),
            }, CancellationToken.None);
            // Enqueue once the consumer listens and its first look (which finds nothing) is over: from then on
            // only a wake-up can end its wait early.
            await WaitUntilAsync(consumerName, $"LISTEN \"{consumer.Channel}\"");
            await WaitUntilAsync(consumerName, "WITH c AS%");
            Assert.False(waiting.IsCompleted);
            var id = Guid.NewGuid();
            var sent = Stopwatch.StartNew();
            await producer.EnqueueAsync([new TaskMessage { Id = id, Task = "t", Queue = QueueNames.Default, CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

            var leases = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Equal(id, Assert.Single(leases).Message.Id);
            Assert.True(sent.Elapsed < TimeSpan.FromSeconds(10), $"woken after {sent.Elapsed}");
        }
        finally
        {
            await producer.DropSchemaAsync(CancellationToken.None);
            await producer.DisposeAsync();
            await consumer.DisposeAsync();
        }

    }

    /// <summary>Waits until an idle session of <paramref name="application"/> last ran a query like <paramref name="query"/>.</summary>
    private static async Task WaitUntilAsync(string application, string query)
    {
        await using var connection = new Npgsql.NpgsqlConnection(PostgresConnectionString.Normalize(PostgresTestBackend.ConnectionString));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = @application AND state = 'idle' AND query LIKE @query", connection);
        command.Parameters.AddWithValue("application", application);
        command.Parameters.AddWithValue("query", query);
        var deadline = Stopwatch.StartNew();
        while ((long)(await command.ExecuteScalarAsync())! == 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"no idle session of the consumer ran {query}");
            await Task.Delay(20);
        }
    }
}
