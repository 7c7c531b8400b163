using System.Net;
using System.Net.Sockets;
using Conveyor.Backends;
using Conveyor.Sqlite;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>How the backend reconnects to a broker it cannot reach: exponential backoff with jitter and a cap, and
/// calls that fail at once (recognised as an outage) while it waits, instead of each trying to connect.</summary>
public sealed class RabbitMqReconnectTests
{
    private static readonly TimeSpan Initial = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);

    [Fact]
    public void Reconnect_delays_double_from_the_initial_delay_up_to_the_cap()
    {
        // The largest jitter factor (1): 0.5 s, 1 s, 2 s, … 16 s, then 30 s for every later attempt.
        double[] expected = [0.5, 1, 2, 4, 8, 16, 30, 30, 30];
        var delays = expected.Select((_, attempt) => RabbitMqConnection.ReconnectBackoff(attempt, Initial, Max, 1).TotalSeconds).ToArray();
        Assert.Equal(expected, delays);
        Assert.Equal(Max, RabbitMqConnection.ReconnectBackoff(10_000, Initial, Max, 1));
    }

    [Fact]
    public void Reconnect_delays_are_jittered_between_half_and_all_of_the_backoff()
    {
        for (var attempt = 0; attempt < 12; attempt++)
        {
            var full = RabbitMqConnection.ReconnectBackoff(attempt, Initial, Max, 1);
            Assert.Equal(full / 2, RabbitMqConnection.ReconnectBackoff(attempt, Initial, Max, 0));
            var some = RabbitMqConnection.ReconnectBackoff(attempt, Initial, Max, 0.5);
            Assert.InRange(some, full / 2, full);
            Assert.NotEqual(full, some);
        }
    }

    [Fact]
    public async Task While_the_broker_is_unreachable_calls_fail_at_once_as_an_outage_and_only_the_backoff_tries_again()
    {
        // A port that accepts TCP connections and closes them at once: every connection attempt fails, and is counted.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var attempts = 0;
        var attemptTimes = new System.Collections.Concurrent.ConcurrentQueue<DateTime>();
        using var stop = new CancellationTokenSource();
        var acceptor = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var client = await listener.AcceptTcpClientAsync(stop.Token);
                    attemptTimes.Enqueue(DateTime.UtcNow);
                    Interlocked.Increment(ref attempts);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var path = Path.Combine(Path.GetTempPath(), "conveyor-rabbitmq-tests", Guid.NewGuid().ToString("N") + ".db");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var store = new SqliteBackend(new SqliteBackendOptions { Path = path });
        await using (var backend = new RabbitMqBackend(store, new RabbitMqBackendOptions
        {
            Url = $"amqp://guest:guest@127.0.0.1:{port}/",
            ReconnectDelay = TimeSpan.FromSeconds(2),
            MaxReconnectDelay = TimeSpan.FromSeconds(4),
        }))
        {
            await store.MigrateAsync(CancellationToken.None);
            var first = await Assert.ThrowsAnyAsync<Exception>(() => backend.MigrateAsync(CancellationToken.None));
            Assert.Equal("rabbitmq", BackendOutage.Find(backend, first));
            Assert.Equal(1, Volatile.Read(ref attempts));

            // The next attempt is the reconnect loop's, at least 1 s later (2 s × jitter of 0.5 to 1): meanwhile every call
            // fails at once, names the broker, and opens no connection. ("At once" is bounded loosely, for a loaded CI
            // machine: a call that tried to connect would wait out the client's handshake timeout, 10 s and more.)
            for (var i = 0; i < 10; i++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var health = await backend.CheckHealthAsync(CancellationToken.None);
                Assert.False(health.Healthy);
                Assert.Contains("reconnecting", health.Description, StringComparison.Ordinal);
                var exception = await Assert.ThrowsAsync<BackendUnavailableException>(() => backend.MigrateAsync(CancellationToken.None));
                Assert.Equal("rabbitmq", ((IConveyorBackend)backend).GetUnavailableBackend(exception));
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"a call took {clock.Elapsed} while the broker was unreachable");
            }
            // Ten calls made no connection attempt of their own (on a slow machine the loop's own next one may have come).
            Assert.InRange(Volatile.Read(ref attempts), 1, 2);

            // The loop tries again, with backoff: a second attempt comes within 2 s (+ margin), a third only after 1–4 s more.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
            while (Volatile.Read(ref attempts) < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, "the backend did not try to reconnect");
                await Task.Delay(50);
            }
            var secondAt = attemptTimes.ElementAt(1);
            while (Volatile.Read(ref attempts) < 3)
            {
                Assert.True(DateTime.UtcNow < secondAt + TimeSpan.FromSeconds(8), "the backend did not try to reconnect again");
                await Task.Delay(50);
            }
            var thirdAt = attemptTimes.ElementAt(2);
            Assert.True(thirdAt - secondAt >= TimeSpan.FromSeconds(0.9), $"the third attempt came {thirdAt - secondAt} after the second");
        }
        await stop.CancelAsync();
        await acceptor;
        listener.Stop();
        foreach (var suffix in new[] { "", "-wal", "-shm", "-journal" })
        {
            File.Delete(path + suffix);
        }
    }
}
