namespace Conveyor;

/// <summary>
/// Exponential backoff with jitter, bounded: the delay before attempt n+1 is
/// <c>min(MaxDelay, BaseDelay * 2^(n-1))</c>, scaled by a random factor in [1 - Jitter, 1 + Jitter]
/// and never above <see cref="MaxDelay"/>.
/// </summary>
/// <param name="BaseDelay">Delay after the first failed attempt. Default 1 s.</param>
/// <param name="MaxDelay">Upper bound of any delay. Default 10 min.</param>
/// <param name="Jitter">Relative spread in [0, 1]. Default 0.2 (±20 %).</param>
public sealed record RetryPolicy(TimeSpan BaseDelay, TimeSpan MaxDelay, double Jitter = 0.2)
{
    /// <summary>1 s base, 10 min cap, ±20 % jitter.</summary>
    public static RetryPolicy Default { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));

    /// <summary>The delay after failed attempt <paramref name="attempt"/> (1-based).</summary>
    public TimeSpan DelayAfter(int attempt, Random? random = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var exponent = Math.Min(attempt - 1, 40);
        var raw = BaseDelay.TotalMilliseconds * Math.Pow(2, exponent);
        var capped = Math.Min(raw, MaxDelay.TotalMilliseconds);
        var jitter = Math.Clamp(Jitter, 0, 1);
        var factor = 1 + (((random ?? Random.Shared).NextDouble() * 2) - 1) * jitter;
        return TimeSpan.FromMilliseconds(Math.Min(capped * factor, MaxDelay.TotalMilliseconds));
    }
}
