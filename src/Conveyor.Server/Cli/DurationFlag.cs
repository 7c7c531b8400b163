using System.Globalization;

namespace Conveyor.Server.Cli;

/// <summary>Durations on the command line as Celery's flags take them: seconds (<c>300</c>, <c>2.5</c>), or with a
/// unit (<c>500ms</c>, <c>30s</c>, <c>5m</c>, <c>1h</c>); <c>hh:mm:ss</c> as in configuration also works.</summary>
internal static class DurationFlag
{
    public const string Forms = "Seconds (300), 500ms, 30s, 5m, 1h or hh:mm:ss";

    /// <summary>The configuration value (a TimeSpan's text) of a flag's <paramref name="text"/>; text that is no duration
    /// is passed on as given, so that reading the configuration reports it with its key.</summary>
    public static string ToConfiguration(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var duration) ? duration.ToString("c", CultureInfo.InvariantCulture) : text;
    }

    public static bool TryParse(string text, out TimeSpan duration)
    {
        duration = default;
        var value = text.Trim();
        if (value.Contains(':', StringComparison.Ordinal))
        {
            return TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out duration);
        }
        var (number, unit) = value.EndsWith("ms", StringComparison.OrdinalIgnoreCase) ? (value[..^2], 0.001)
            : value.EndsWith('s') || value.EndsWith('S') ? (value[..^1], 1)
            : value.EndsWith('m') || value.EndsWith('M') ? (value[..^1], 60)
            : value.EndsWith('h') || value.EndsWith('H') ? (value[..^1], 3600)
            : (value, 1.0);
        if (!double.TryParse(number, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var amount)
            || double.IsNaN(amount) || Math.Abs(amount * unit) > TimeSpan.MaxValue.TotalSeconds / 2)
        {
            return false;
        }
        duration = TimeSpan.FromSeconds(amount * unit);
        return true;
    }
}
