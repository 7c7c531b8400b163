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

public sealed class RetryBackoffUnitTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(1000)]
    public void Fixed_backoff_waits_the_same_delay_after_every_attempt(int attempt)
    {
        var policy = RetryPolicy.Fixed(TimeSpan.FromSeconds(30), jitter: 0);

        Assert.Equal(TimeSpan.FromSeconds(30), policy.DelayAfter(attempt));
        Assert.Equal(RetryBackoff.Fixed, policy.Backoff);
    }

    [Fact]
    public void Fixed_backoff_is_the_exponential_formula_with_the_base_delay_at_the_cap()
    {
        Assert.Equal(new RetryPolicy(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), 0.3), RetryPolicy.Fixed(TimeSpan.FromSeconds(5), 0.3));
        Assert.Equal(RetryBackoff.Exponential, RetryPolicy.Exponential(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2)).Backoff);
        Assert.Equal(RetryBackoff.Exponential, RetryPolicy.Default.Backoff);
    }

    [Fact]
    public void Fixed_backoff_jitter_spreads_around_the_delay_without_exceeding_it()
    {
        var policy = RetryPolicy.Fixed(TimeSpan.FromSeconds(10), jitter: 0.5);
        var random = new Random(7);

        var delays = Enumerable.Range(0, 1000).Select(_ => policy.DelayAfter(3, random)).ToList();

        // Never above the cap, which a fixed backoff's delay is: the spread is all below it.
        Assert.All(delays, d => Assert.InRange(d, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10)));
        Assert.True(delays.Min() < TimeSpan.FromSeconds(5.5), $"smallest {delays.Min()}");
    }

    [Fact]
    public void Exponential_factory_keeps_the_positional_meaning()
    {
        var policy = RetryPolicy.Exponential(TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(1), jitter: 0);

        Assert.Equal(TimeSpan.FromSeconds(2), policy.DelayAfter(1));
        Assert.Equal(TimeSpan.FromSeconds(16), policy.DelayAfter(4));
        Assert.Equal(TimeSpan.FromMinutes(1), policy.DelayAfter(9));
    }

    [Fact]
    public void Policies_are_equal_when_their_lists_hold_the_same_names_in_order()
    {
        var a = RetryPolicy.Default with { RetryOn = ["TimeoutException"], NeverRetryOn = new List<string> { "ArgumentException" } };
        var b = RetryPolicy.Default with { RetryOn = new[] { "TimeoutException" }, NeverRetryOn = ["ArgumentException"] };

        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, b with { RetryOn = ["IOException"] });
        Assert.NotEqual(RetryPolicy.Default, a);
    }

    [Fact]
    public void Valid_policies_have_no_problems()
    {
        Assert.Empty(RetryPolicy.Default.Validate());
        Assert.Empty(RetryPolicy.Fixed(TimeSpan.Zero, 0).WithRetryOn<TimeoutException>().Validate());
    }

    [Fact]
    public void Validation_names_each_field_and_what_it_accepts()
    {
        var policy = new RetryPolicy(TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(1), Jitter: 1.5)
        {
            RetryOn = ["Http RequestException", "TimeoutException"],
            NeverRetryOn = [.. Enumerable.Range(0, 51).Select(i => $"E{i}")],
        };

        var errors = policy.Validate("retry.");

        Assert.Equal(["retry.maxDelay", "retry.jitter", "retry.retryOn[0]", "retry.neverRetryOn"], errors.Select(e => e.Field));
        Assert.Contains("below the delay", errors[0].Message, StringComparison.Ordinal);
        Assert.Contains("from 0 to 1", errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("not an exception type name", errors[2].Message, StringComparison.Ordinal);
        Assert.Contains("at most 50", errors[3].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Negative_or_too_long_delays_are_refused()
    {
        var errors = new RetryPolicy(TimeSpan.FromSeconds(-1), TimeSpan.FromDays(400)).Validate();

        Assert.Equal(["delay", "maxDelay"], errors.Select(e => e.Field));
    }

    [Theory]
    [InlineData("TimeoutException", true)]
    [InlineData("System.Net.Http.HttpRequestException", true)]
    [InlineData("Outer+Inner", true)]
    [InlineData("MyException`1", true)]
    [InlineData("", false)]
    [InlineData("A,B", false)]
    [InlineData(".Leading", false)]
    [InlineData("Trailing.", false)]
    [InlineData("With space", false)]
    public void Exception_names_are_type_names_without_separators(string name, bool valid)
    {
        Assert.Equal(valid, RetryPolicy.IsValidExceptionName(name));
    }
}

public sealed class RetryOnUnitTests
{
    private sealed class ScoringUnavailableException(string message) : HttpRequestException(message);

    private sealed class GenericFailure<T> : Exception;

    [Fact]
    public void Every_exception_is_retried_when_no_list_is_set()
    {
        Assert.True(RetryPolicy.Default.ShouldRetry(typeof(InvalidOperationException)));
        Assert.True(RetryPolicy.Default.ShouldRetry(typeof(Exception)));
    }

    [Theory]
    [InlineData("System.TimeoutException")]
    [InlineData("TimeoutException")]
    public void RetryOn_matches_a_type_by_full_or_short_name(string name)
    {
        var policy = RetryPolicy.Default with { RetryOn = [name] };

        Assert.True(policy.ShouldRetry(typeof(TimeoutException)));
        Assert.False(policy.ShouldRetry(typeof(InvalidOperationException)));
    }

    [Fact]
    public void RetryOn_matches_derived_types_through_their_base_types()
    {
        var policy = RetryPolicy.Default.WithRetryOn<HttpRequestException>();

        Assert.True(policy.ShouldRetry(typeof(ScoringUnavailableException)));
        Assert.True((RetryPolicy.Default with { RetryOn = ["IOException"] }).ShouldRetry(typeof(FileNotFoundException)));
        Assert.False(policy.ShouldRetry(typeof(IOException)));
    }

    [Fact]
    public void Names_are_case_sensitive()
    {
        Assert.False((RetryPolicy.Default with { RetryOn = ["timeoutexception"] }).ShouldRetry(typeof(TimeoutException)));
    }

    [Fact]
    public void NeverRetryOn_wins_over_RetryOn()
    {
        var policy = RetryPolicy.Default.WithRetryOn<HttpRequestException>() with { NeverRetryOn = ["ScoringUnavailableException"] };

        Assert.False(policy.ShouldRetry(typeof(ScoringUnavailableException)));
        Assert.True(policy.ShouldRetry(typeof(HttpRequestException)));
    }

    [Fact]
    public void NeverRetryOn_alone_retries_every_other_exception()
    {
        var policy = RetryPolicy.Default.WithNeverRetryOn<ArgumentException>();

        Assert.False(policy.ShouldRetry(typeof(ArgumentNullException)));
        Assert.True(policy.ShouldRetry(typeof(TimeoutException)));
    }

    [Fact]
    public void Exception_at_the_root_matches_every_exception()
    {
        Assert.True((RetryPolicy.Default with { RetryOn = ["Exception"] }).ShouldRetry(typeof(TimeoutException)));
        Assert.False((RetryPolicy.Default with { NeverRetryOn = ["System.Exception"] }).ShouldRetry(typeof(TimeoutException)));
    }

    [Fact]
    public void A_generic_exception_is_named_by_its_definition()
    {
        var policy = RetryPolicy.Default.WithRetryOn(typeof(GenericFailure<>));

        Assert.Equal("Conveyor.Tests.RetryOnUnitTests+GenericFailure`1", Assert.Single(policy.RetryOn));
        Assert.True(policy.ShouldRetry(typeof(GenericFailure<int>)));
        Assert.True((RetryPolicy.Default with { RetryOn = ["GenericFailure`1"] }).ShouldRetry(typeof(GenericFailure<string>)));
    }

    [Fact]
    public void Only_exception_types_can_be_added_by_type()
    {
        Assert.Throws<ArgumentException>(() => RetryPolicy.Default.WithRetryOn(typeof(string)));
    }
}
