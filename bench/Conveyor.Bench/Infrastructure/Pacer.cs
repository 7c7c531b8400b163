using System.Diagnostics;

namespace Conveyor.Bench.Infrastructure;

/// <summary>
/// Paces sends at a fixed rate against absolute deadlines (start + i / rate), so a late send does
/// not push every later one back, and the achieved rate over the run is the asked rate.
/// </summary>
internal sealed class Pacer
{
    private readonly long _start;
    private readonly double _ticksPerSend;

    public Pacer(double ratePerSecond)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ratePerSecond);
        _ticksPerSend = Stopwatch.Frequency / ratePerSecond;
        _start = Stopwatch.GetTimestamp();
    }

    /// <summary>Waits until send <paramref name="index"/> is due. Sleeps in whole milliseconds (the timer's
    /// resolution) and does not spin, so it leaves the cores to the system under test; a send may
    /// therefore leave up to 1 ms early or late, which the latency figures do not depend on (each
    /// sample is timed from its actual send).</summary>
    public async ValueTask WaitForAsync(long index, CancellationToken cancellationToken)
    {
        var due = _start + (long)(index * _ticksPerSend);
        var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
        if (remaining >= TimeSpan.FromMilliseconds(1))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Floor(remaining.TotalMilliseconds)), cancellationToken);
        }
    }

    /// <summary>Time since the pacer started.</summary>
    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(_start);
}
