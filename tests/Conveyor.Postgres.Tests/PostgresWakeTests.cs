using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>Notifications across processes: two backend instances on one schema stand for two processes.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The backends are disposed by IAsyncLifetime.DisposeAsync.")]
public sealed class PostgresWakeTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly string _schema = "t_" + Guid.NewGuid().ToString("N");
    // Named, so that the test can find the consumer's LISTEN session in pg_stat_activity.
    private readonly string _consumerName = "wake-test-" + Guid.NewGuid().ToString("N");
    private PostgresBackend _producer = null!;
    private PostgresBackend _consumer = null!;

    public async Task InitializeAsync()
    {
        _producer = new PostgresBackend(new PostgresBackendOptions { ConnectionString = TestServers.Postgres, Schema = _schema });
        _consumer = new PostgresBackend(new PostgresBackendOptions
        {
            ConnectionString = PostgresConnectionString.Normalize(TestServers.Postgres) + ";Application Name=" + _consumerName,
            Schema = _schema,
            MaxReconnectDelay = TimeSpan.FromMilliseconds(200),
        });
        await _producer.MigrateAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _consumer.DisposeAsync();
        await _producer.DropSchemaAsync(CancellationToken.None);
        await _producer.DisposeAsync();
    }

    private static FetchRequest Request => new()
    {
        WorkerId = "w",
        Queues = [new QueueWeight(QueueNames.Default)],
        MaxCount = 1,
        LeaseDuration = TimeSpan.FromMinutes(1),
    };

    [Fact]
    public async Task An_enqueue_through_one_instance_notifies_a_subscriber_of_another_which_then_fetches_the_task()
    {
        var ready = new TaskCompletionSource<Notification>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await _consumer.Notifier.SubscribeAsync(NotifierChannels.Ready, n => ready.TrySetResult(n), CancellationToken.None);
        // A fetch returns at once, even with nothing to fetch.
        var look = Stopwatch.StartNew();
        Assert.Empty(await _consumer.FetchAsync(Request, CancellationToken.None));
        Assert.True(look.Elapsed < TimeSpan.FromSeconds(5), $"an empty fetch took {look.Elapsed}");

        var id = Guid.NewGuid();
        await _producer.EnqueueAsync([new TaskMessage { Id = id, Task = "t", Queue = QueueNames.Default, CreatedAt = DateTimeOffset.UtcNow }], CancellationToken.None);

        Assert.Equal(new Notification(NotifierChannels.Ready, QueueNames.Default), await ready.Task.WaitAsync(Bound));
        Assert.Equal(id, Assert.Single(await _consumer.FetchAsync(Request, CancellationToken.None)).Message.Id);
    }

    [Fact]
    public async Task After_the_listening_connection_is_lost_and_back_every_subscribed_channel_hears_missed()
    {
        var missed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var events = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var ready = await _consumer.Notifier.SubscribeAsync(NotifierChannels.Ready, n => { if (n.Missed) { missed.TrySetResult(); } }, CancellationToken.None);
        await using var other = await _consumer.Notifier.SubscribeAsync(NotifierChannels.Events, n => { if (n.Missed) { events.TrySetResult(); } }, CancellationToken.None);
        Assert.False(missed.Task.IsCompleted);

        await TerminateListenerAsync();

        await missed.Task.WaitAsync(Bound);
        await events.Task.WaitAsync(Bound);
        // And it listens again: a notification from the other instance arrives.
        var heard = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var again = await _consumer.Notifier.SubscribeAsync("conformance", n => { if (n.Payload == "back") { heard.TrySetResult(); } }, CancellationToken.None);
        await _producer.Notifier.PublishAsync("conformance", "back", CancellationToken.None);
        await heard.Task.WaitAsync(Bound);
    }

    [Fact]
    public async Task A_wake_up_from_a_process_of_an_earlier_version_is_a_ready_notification_for_any_queue()
    {
        var ready = new TaskCompletionSource<Notification>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await _consumer.Notifier.SubscribeAsync(NotifierChannels.Ready, n => ready.TrySetResult(n), CancellationToken.None);

        // Earlier versions sent their instance id alone.
        await using (var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres)))
        {
            await connection.OpenAsync();
            await using var notify = new NpgsqlCommand("SELECT pg_notify(@channel, @sender)", connection);
            notify.Parameters.AddWithValue("channel", _consumer.Channel);
            notify.Parameters.AddWithValue("sender", Guid.NewGuid().ToString("N"));
            await notify.ExecuteNonQueryAsync();
        }

        Assert.Equal(new Notification(NotifierChannels.Ready, ""), await ready.Task.WaitAsync(Bound));
    }

    [Fact]
    public async Task A_payload_with_a_nul_character_is_refused()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(async () => await _producer.Notifier.PublishAsync("conformance", "a\0b", CancellationToken.None));
        Assert.Contains("NUL", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Ends the consumer's LISTEN session from the server side, as a network failure or restart would.</summary>
    private async Task TerminateListenerAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = @application AND query LIKE 'LISTEN%'", connection);
        command.Parameters.AddWithValue("application", _consumerName);
        var deadline = Stopwatch.StartNew();
        while ((long)(await command.ExecuteScalarAsync())! == 0)
        {
            Assert.True(deadline.Elapsed < Bound, "the consumer's LISTEN session never showed in pg_stat_activity");
            await Task.Delay(20);
        }
    }
}
