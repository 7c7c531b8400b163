using System.Globalization;
using System.Text.Json;
using System.Xml;

namespace Conveyor.AspNetCore.Requests;

/// <summary>Readers of the value formats the API accepts: ISO 8601 durations and RFC 3339 times.</summary>
public static class ApiValues
{
    private static readonly string[] Rfc3339Formats =
    [
        "yyyy-MM-dd'T'HH:mm:ssK",
        "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK",
        "yyyy-MM-dd' 'HH:mm:ssK",
        "yyyy-MM-dd' 'HH:mm:ss.FFFFFFFK",
    ];

    /// <summary>Reads a duration: an ISO 8601 string such as <c>PT30S</c> or <c>P1DT2H</c> (no years or months,
    /// which have no fixed length), or a JSON number of seconds. Returns the problem, or null.</summary>
    public static string? TryReadDuration(JsonElement value, out TimeSpan duration)
    {
        duration = default;
        if (value.ValueKind == JsonValueKind.Number)
        {
            var seconds = value.GetDouble();
            if (Math.Abs(seconds) >= TimeSpan.MaxValue.TotalSeconds)
            {
                return $"{seconds} seconds is out of range";
            }
            duration = TimeSpan.FromSeconds(seconds);
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            return "must be an ISO 8601 duration such as \"PT30S\", or a number of seconds";
        }
        return TryParseDuration(value.GetString()!, out duration);
    }

    /// <summary>Parses an ISO 8601 duration such as <c>PT30S</c>; returns the problem, or null.</summary>
    public static string? TryParseDuration(string text, out TimeSpan duration)
    {
        ArgumentNullException.ThrowIfNull(text);
        duration = default;
        var problem = $"'{text}' is not an ISO 8601 duration such as \"PT30S\", \"PT5M\" or \"P1DT2H\"";
        var body = text.StartsWith('-') ? text[1..] : text;
        if (!body.StartsWith('P'))
        {
            return problem;
        }
        var timePart = body.IndexOf('T', StringComparison.Ordinal);
        var datePart = timePart < 0 ? body : body[..timePart];
        if (datePart.Contains('Y', StringComparison.Ordinal) || datePart.Contains('M', StringComparison.Ordinal))
        {
            return $"'{text}' uses years or months, which have no fixed length; give days instead (\"P30D\")";
        }
        try
        {
            duration = XmlConvert.ToTimeSpan(text);
            return null;
        }
        catch (FormatException)
        {
            return problem;
        }
        catch (OverflowException)
        {
            return $"'{text}' is out of range";
        }
    }

    /// <summary>Reads an RFC 3339 time with an explicit offset, such as <c>2026-01-01T00:00:00Z</c>. Returns the problem, or null.</summary>
    public static string? TryReadTime(JsonElement value, out DateTimeOffset time)
    {
        time = default;
        if (value.ValueKind != JsonValueKind.String)
        {
            return "must be an RFC 3339 time such as \"2026-01-01T00:00:00Z\"";
        }
        return TryParseTime(value.GetString()!, out time);
    }

    /// <summary>Parses an RFC 3339 time with an explicit offset; returns the problem, or null.</summary>
    public static string? TryParseTime(string text, out DateTimeOffset time)
    {
        ArgumentNullException.ThrowIfNull(text);
        time = default;
        // RFC 3339 allows lower-case 't' and 'z'; .NET's format strings want upper case. Only those letters can occur.
        var upper = text.ToUpperInvariant();
        var hasOffset = upper.EndsWith('Z') || (upper.Length > 6 && upper[^6] is '+' or '-' && upper[^3] == ':');
        if (!hasOffset || !DateTimeOffset.TryParseExact(upper, Rfc3339Formats, CultureInfo.InvariantCulture, DateTimeStyles.None, out time))
        {
            return $"'{text}' is not an RFC 3339 time such as \"2026-01-01T00:00:00Z\" (the offset, or Z, is required)";
        }
        return null;
    }
}
