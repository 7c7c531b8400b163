using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class RetryPolicyReuseUnitTests
{
    [Fact]
    public void The_default_and_a_repeated_policy_are_handed_out_as_one_instance_and_another_as_a_new_one()
    {
        var reuse = new RetryPolicyReuse();
        var defaults = RetryPolicy.Default;

        Assert.Same(defaults, reuse.Get((long)defaults.BaseDelay.TotalMilliseconds, (long)defaults.MaxDelay.TotalMilliseconds, defaults.Jitter));
        var other = reuse.Get(3_000, 420_000, 0.5);
        Assert.NotSame(defaults, other);
        Assert.Equal((TimeSpan.FromSeconds(3), TimeSpan.FromMinutes(7), 0.5), (other.BaseDelay, other.MaxDelay, other.Jitter));
        Assert.Same(other, reuse.Get(3_000, 420_000, 0.5));
        // Only the jitter differs: a policy of its own.
        var jittered = reuse.Get(3_000, 420_000, 0.25);
        Assert.NotSame(other, jittered);
        Assert.Equal(0.25, jittered.Jitter);
        // Back to the default after a policy of their own: the shared instance again.
        Assert.Same(defaults, reuse.Get((long)defaults.BaseDelay.TotalMilliseconds, (long)defaults.MaxDelay.TotalMilliseconds, defaults.Jitter));
    }
}
