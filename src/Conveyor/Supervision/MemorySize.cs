using System.Globalization;

namespace Conveyor;

/// <summary>Reads memory sizes as operators write them: <c>512MB</c>, <c>1.5GB</c>, <c>800KB</c>, <c>4096B</c>, or a plain
/// number of kilobytes (<c>1048576</c>), which is how Celery's <c>--max-memory-per-child</c> and the seeds' deployments
/// give it. Units are binary (1 KB = 1024 bytes), as Celery and the kernel's RSS figures count them.</summary>
public static class MemorySize
{
    /// <summary>The accepted forms, for messages.</summary>
    public const string Forms = "a size such as 512MB, 1GB or 800KB, or a plain number of kilobytes such as 1048576";

    /// <summary>Parses <paramref name="text"/> into bytes; false when it is not a positive size.</summary>
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var value = text.Trim();
        var unitStart = value.Length;
        while (unitStart > 0 && char.IsAsciiLetter(value[unitStart - 1]))
        {
            unitStart--;
        }
        long multiplier = value[unitStart..].ToUpperInvariant() switch
        {
            // No unit: kilobytes, Celery's form.
            "" or "K" or "KB" or "KIB" => 1024,
            "B" => 1,
            "M" or "MB" or "MIB" => 1024L * 1024,
            "G" or "GB" or "GIB" => 1024L * 1024 * 1024,
            "T" or "TB" or "TIB" => 1024L * 1024 * 1024 * 1024,
            _ => 0,
        };
        if (multiplier == 0
            || !double.TryParse(value[..unitStart].Trim(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)
            || number <= 0 || number * multiplier >= long.MaxValue)
        {
            return false;
        }
        bytes = (long)(number * multiplier);
        return bytes > 0;
    }

    /// <summary>A size for logs: <c>512.0 MB</c>.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1024L * 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):F2} GB"),
        >= 1024L * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):F1} MB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F0} KB"),
    };
}
