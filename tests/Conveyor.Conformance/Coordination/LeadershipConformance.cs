namespace Conveyor.Conformance;

/// <summary>Coordination role: leader election by a named lease with a time to live.</summary>
public abstract class LeadershipConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(15);

    private Task<bool> AcquireAsync(string owner, string name = "scheduler") =>
        Coordination.TryAcquireLeadershipAsync(name, owner, Ttl, Timeout);

    [Fact]
    public async Task First_candidate_acquires_leadership()
    {
        Assert.True(await AcquireAsync("a"));
    }

    [Fact]
    public async Task Leader_renews_its_leadership()
    {
        await AcquireAsync("a");

        Assert.True(await AcquireAsync("a"));
    }

    [Fact]
    public async Task Leadership_is_exclusive_while_it_is_held()
    {
        await AcquireAsync("a");
        Advance(Ttl - TimeSpan.FromSeconds(1));

        Assert.False(await AcquireAsync("b"));
        Assert.True(await AcquireAsync("a"));
    }

    [Fact]
    public async Task Renewal_extends_the_leadership_from_now()
    {
        await AcquireAsync("a");
        Advance(Ttl - TimeSpan.FromSeconds(2));
        await AcquireAsync("a");
        Advance(Ttl - TimeSpan.FromSeconds(2));

        Assert.False(await AcquireAsync("b"));
    }

    [Fact]
    public async Task Leadership_not_renewed_within_its_ttl_passes_to_another_candidate()
    {
        await AcquireAsync("a");
        Advance(Ttl + TimeSpan.FromSeconds(1));

        Assert.True(await AcquireAsync("b"));
        Assert.False(await AcquireAsync("a"));
    }

    [Fact]
    public async Task Released_leadership_can_be_taken_at_once()
    {
        await AcquireAsync("a");

        await Coordination.ReleaseLeadershipAsync("scheduler", "a", Timeout);

        Assert.True(await AcquireAsync("b"));
    }

    [Fact]
    public async Task Release_by_a_candidate_that_is_not_the_leader_changes_nothing()
    {
        await AcquireAsync("a");

        await Coordination.ReleaseLeadershipAsync("scheduler", "b", Timeout);

        Assert.False(await AcquireAsync("b"));
        Assert.True(await AcquireAsync("a"));
    }

    [Fact]
    public async Task Release_of_leadership_nobody_holds_does_nothing()
    {
        await Coordination.ReleaseLeadershipAsync("scheduler", "a", Timeout);

        Assert.True(await AcquireAsync("b"));
    }

    [Fact]
    public async Task Leaderships_of_different_names_are_independent()
    {
        Assert.True(await AcquireAsync("a", "scheduler"));
        Assert.True(await AcquireAsync("b", "cron"));

        Assert.False(await AcquireAsync("b", "scheduler"));
        Assert.False(await AcquireAsync("a", "cron"));
    }

    [Fact]
    public async Task Concurrent_candidates_elect_exactly_one_leader()
    {
        var candidates = Enumerable.Range(0, 8).Select(i => $"c{i}").ToList();

        var results = await Task.WhenAll(candidates.Select(c => Task.Run(() => AcquireAsync(c))));

        Assert.Single(results, r => r);
    }
}
