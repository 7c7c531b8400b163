namespace Conveyor.Backends;

/// <summary>
/// The time arithmetic every <see cref="ILimitStore"/> shares: rate reservations are kept in whole microseconds since the
/// Unix epoch, so that an interval of 1 µs (<c>1000000/s</c>) is exact and every backend stores the same times (a
/// millisecond would round <c>3000/s</c> to 0 or 1 ms).
/// </summary>
public static class LimitTimes
{
    /// <summary>The interval in whole microseconds (rounded to the nearest).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Under 1 µs once rounded.</exception>
    public static long IntervalMicroseconds(TimeSpan interval)
    {
        var microseconds = (long)Math.Round(interval.Ticks / (double)TimeSpan.TicksPerMicrosecond, MidpointRounding.AwayFromZero);
        if (microseconds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(interval), interval, "a rate limit's interval must be at least 1 µs (at most 1,000,000 starts a second)");
        }
        return microseconds;
    }

    /// <summary>Whole microseconds since the Unix epoch (truncated).</summary>
    public static long ToMicroseconds(DateTimeOffset time) => (time.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / TimeSpan.TicksPerMicrosecond;

    /// <summary>The time <paramref name="microseconds"/> after the Unix epoch, in UTC.</summary>
    public static DateTimeOffset FromMicroseconds(long microseconds) =>
        new(DateTimeOffset.UnixEpoch.UtcTicks + (microseconds * TimeSpan.TicksPerMicrosecond), TimeSpan.Zero);
}
