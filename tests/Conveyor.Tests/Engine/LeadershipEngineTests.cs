using System.Diagnostics;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Engine;

/// <summary>The leadership seam: one leader among processes sharing a backend, a quick hand-over when it stops, and
/// leader-only services that run where the leader is.</summary>
public sealed class LeadershipEngineTests
{
    /// <summary>Counts its passes; a user's leader-only service, built on the same base as Conveyor's own.</summary>
    internal sealed class CountingLeaderService(ILeadership leadership, TimeProvider time, ILogger<CountingLeaderService> logger)
        : LeaderOnlyService(leadership, time, logger)
    {
        private int _passes;

        public int Passes => Volatile.Read(ref _passes);

        protected override string Name => "counting";

        protected override Task<TimeSpan> RunOnceAsync(CancellationToken leading)
        {
            Interlocked.Increment(ref _passes);
            return Task.FromResult(TimeSpan.FromMilliseconds(20));
        }
    }

    private static IHost Build(InMemoryStorage storage, TimeSpan leaderLease)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<CountingLeaderService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<CountingLeaderService>());
        builder.Services.AddConveyor(o =>
        {
            o.RunWorker = false;
            o.Scheduler.LeaderLease = leaderLease;
        }).UseInMemoryBackend(storage);
        return builder.Build();
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan bound, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < bound, $"{what}: not within {bound}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task One_of_two_processes_leads_and_only_its_leader_only_services_run()
    {
        var storage = new InMemoryStorage();
        using var first = Build(storage, TimeSpan.FromSeconds(30));
        using var second = Build(storage, TimeSpan.FromSeconds(30));
        await first.StartAsync();
        await second.StartAsync();
        var a = first.Services.GetRequiredService<ILeadership>();
        var b = second.Services.GetRequiredService<ILeadership>();

        await WaitUntilAsync(() => a.IsLeader || b.IsLeader, TimeSpan.FromSeconds(10), "a leader");
        var (leader, follower) = a.IsLeader ? (first, second) : (second, first);
        await WaitUntilAsync(() => leader.Services.GetRequiredService<CountingLeaderService>().Passes >= 3, TimeSpan.FromSeconds(10), "passes on the leader");

        Assert.False(a.IsLeader && b.IsLeader);
        Assert.Equal(0, follower.Services.GetRequiredService<CountingLeaderService>().Passes);
        await first.StopAsync();
        await second.StopAsync();
    }

    [Fact]
    public async Task When_the_leader_stops_another_process_takes_over_at_once_not_when_the_lease_runs_out()
    {
        var storage = new InMemoryStorage();
        using var first = Build(storage, TimeSpan.FromSeconds(30));
        await first.StartAsync();
        var a = first.Services.GetRequiredService<ILeadership>();
        await WaitUntilAsync(() => a.IsLeader, TimeSpan.FromSeconds(10), "the first process leads");
        using var second = Build(storage, TimeSpan.FromSeconds(30));
        await second.StartAsync();
        var b = second.Services.GetRequiredService<ILeadership>();
        var term = await a.WaitForLeadershipAsync(CancellationToken.None);

        var handOver = Stopwatch.StartNew();
        await first.StopAsync();

        Assert.True(term.IsCancellationRequested, "the stopped leader's term was not ended");
        // The lease is 30 s and a follower looks every 10 s: only the stepping-down notification explains a quick take-over.
        await WaitUntilAsync(() => b.IsLeader, TimeSpan.FromSeconds(5), "the second process takes over");
        Assert.True(handOver.Elapsed < TimeSpan.FromSeconds(5), $"took {handOver.Elapsed}");
        await WaitUntilAsync(() => second.Services.GetRequiredService<CountingLeaderService>().Passes > 0, TimeSpan.FromSeconds(5), "passes on the new leader");
        await second.StopAsync();
    }
}
