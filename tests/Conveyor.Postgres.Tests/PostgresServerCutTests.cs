using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.TestBackends;

namespace Conveyor.Postgres.Tests;

/// <summary>A backend whose server stops answering (through a relay that stops forwarding, as across a partition) is
/// disposed within a bound, with calls in flight that would otherwise end only at Npgsql's own time limits.</summary>
public sealed class PostgresServerCutTests
{
    [Fact]
    public async Task A_backend_whose_server_stopped_answering_is_disposed_within_seconds_with_an_enqueue_and_a_notify_in_flight()
    {
        var location = TestServers.FreshPostgres("cut");
        var direct = location.Create();
        try
        {
            await direct.MigrateAsync(CancellationToken.None);
            var server = new Uri(TestServers.Postgres);
            await using var relay = TcpRelay.Start(server.Host, server.Port);
            var relayed = (PostgresBackend)(location with { ConnectionString = relay.Through(location.ConnectionString, server) }).Create();
            await relayed.Queue.EnqueueAsync([Message()], CancellationToken.None);

            relay.Cut();
            var enqueue = relayed.Queue.EnqueueAsync([Message()], CancellationToken.None);
            var notify = relayed.Notifier.PublishAsync("cut-test", "x", CancellationToken.None).AsTask();
            var clock = Stopwatch.StartNew();
            await relayed.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));
            // The enqueue groups wait up to 2 s, the NOTIFY 1 s, the listener's UNLISTEN 1 s; before those bounds the
            // dispose waited for Npgsql's connection and command timeouts (15 s and 30 s).
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), $"the dispose took {clock.Elapsed}");
            Assert.False(enqueue.IsCompletedSuccessfully, "an enqueue committed through a relay that forwards nothing");
            Assert.False(notify.IsCompletedSuccessfully, "a NOTIFY went through a relay that forwards nothing");

            // The relay's end closes the connections: what was in flight fails now, as it would at Npgsql's time limits.
            await relay.DisposeAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => enqueue.WaitAsync(TimeSpan.FromSeconds(60)));
            await Assert.ThrowsAnyAsync<Exception>(() => notify.WaitAsync(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            await location.DropAsync(CancellationToken.None);
            await ((IAsyncDisposable)direct).DisposeAsync();
        }
    }

    private static TaskMessage Message() =>
        new() { Id = Guid.CreateVersion7(), Task = "t", Queue = QueueNames.Default, MaxAttempts = 1, CreatedAt = DateTimeOffset.UtcNow };
}
