namespace Conveyor.Tests;

public sealed class RetryPolicyUnitTests
{
    [Fact]
    public void Default_policy_is_one_second_doubling_to_ten_minutes_with_twenty_percent_jitter()
    {
        Assert.Equal(new RetryPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10), 0.2), RetryPolicy.Default);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 4)]
    [InlineData(4, 8)]
    [InlineData(8, 128)]
    public void Delay_doubles_from_the_base_delay_with_each_attempt(int attempt, int seconds)
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), Jitter: 0);

        Assert.Equal(TimeSpan.FromSeconds(seconds), policy.DelayAfter(attempt));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(41)]
    [InlineData(1000)]
    [InlineData(int.MaxValue)]
    public void Delay_never_exceeds_MaxDelay_however_many_attempts_failed(int attempt)
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), Jitter: 0);

        Assert.Equal(TimeSpan.FromSeconds(30), policy.DelayAfter(attempt));
    }

    [Fact]
    public void Base_delay_above_MaxDelay_is_capped()
    {
        var policy = new RetryPolicy(TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(1), Jitter: 0);

        Assert.Equal(TimeSpan.FromMinutes(1), policy.DelayAfter(1));
    }

    [Fact]
    public void Jitter_spreads_delays_within_its_relative_bounds()
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(10), TimeSpan.FromHours(1), Jitter: 0.2);
        var random = new Random(1234);

        var delays = Enumerable.Range(0, 1000).Select(_ => policy.DelayAfter(1, random)).ToList();

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(12)));
        Assert.True(delays.Min() < TimeSpan.FromSeconds(8.5), $"smallest {delays.Min()}");
        Assert.True(delays.Max() > TimeSpan.FromSeconds(11.5), $"largest {delays.Max()}");
    }

    [Fact]
    public void Jitter_at_the_cap_never_exceeds_MaxDelay()
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10), Jitter: 0.5);
        var random = new Random(99);

        var delays = Enumerable.Range(0, 1000).Select(_ => policy.DelayAfter(20, random)).ToList();

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Jitter_above_one_is_treated_as_one()
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(10), TimeSpan.FromHours(1), Jitter: 7);
        var random = new Random(5);

        var delays = Enumerable.Range(0, 1000).Select(_ => policy.DelayAfter(1, random)).ToList();

        Assert.All(delays, d => Assert.InRange(d, TimeSpan.Zero, TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public void Negative_jitter_is_treated_as_none()
    {
        var policy = new RetryPolicy(TimeSpan.FromSeconds(10), TimeSpan.FromHours(1), Jitter: -0.5);

        Assert.Equal(TimeSpan.FromSeconds(20), policy.DelayAfter(2, new Random(3)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void Attempt_below_one_throws(int attempt)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RetryPolicy.Default.DelayAfter(attempt));
    }
}
