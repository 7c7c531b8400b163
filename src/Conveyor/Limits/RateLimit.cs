using System.Globalization;

namespace Conveyor;

/// <summary>
/// A rate limit in the seeds' (Celery's) form: <c>N/s</c>, <c>N/m</c> or <c>N/h</c>, N starts a second, minute or hour,
/// evenly spaced one <see cref="Interval"/> apart (a burst of one, as Celery spaces its tokens): <c>10/m</c> starts one
/// task every 6 s, not ten at once each minute.
/// </summary>
/// <param name="Count">Starts per period, at least 1.</param>
/// <param name="Period">A second, a minute or an hour.</param>
public readonly record struct RateLimit(long Count, TimeSpan Period)
{
    /// <summary>What <see cref="Parse"/> accepts, for error messages.</summary>
    public const string AcceptedForms =
        "'N/s', 'N/m' or 'N/h' (N starts a second, minute or hour, a whole number from 1; at most 1,000,000 a second), such as '10/s', '10/m' or '100/h'";

    /// <summary>The time between two starts: <see cref="Period"/> / <see cref="Count"/>.</summary>
    public TimeSpan Interval => TimeSpan.FromTicks(Period.Ticks / Count);

    /// <summary>Reads <c>N/s</c>, <c>N/m</c> or <c>N/h</c>.</summary>
    public static bool TryParse(string? text, out RateLimit rate)
    {
        rate = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash != text.Length - 2)
        {
            return false;
        }
        var period = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(1),
            'm' => TimeSpan.FromMinutes(1),
            'h' => TimeSpan.FromHours(1),
            _ => TimeSpan.Zero,
        };
        if (period == TimeSpan.Zero
            || !long.TryParse(text.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out var count)
            || count < 1
            // An interval under 1 µs is finer than the limit stores keep (LimitTimes).
            || period.Ticks / count < TimeSpan.TicksPerMicrosecond)
        {
            return false;
        }
        rate = new RateLimit(count, period);
        return true;
    }

    /// <summary>Reads <c>N/s</c>, <c>N/m</c> or <c>N/h</c>.</summary>
    /// <exception cref="FormatException">Anything else; the message says what is accepted.</exception>
    public static RateLimit Parse(string text) =>
        TryParse(text, out var rate) ? rate : throw new FormatException($"'{text}' is not a rate limit: use {AcceptedForms}.");

    /// <summary>The form it was written in: <c>10/m</c>.</summary>
    public override string ToString() =>
        Count.ToString(CultureInfo.InvariantCulture) + "/" + (Period == TimeSpan.FromSeconds(1) ? "s" : Period == TimeSpan.FromMinutes(1) ? "m" : "h");
}
