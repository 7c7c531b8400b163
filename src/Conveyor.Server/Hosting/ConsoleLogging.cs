using Conveyor.Server.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.Logging.Console;

namespace Conveyor.Server.Hosting;

/// <summary>
/// The console log format, chosen by the framework's own setting <c>Logging:Console:FormatterName</c> (which
/// <c>LOG_FORMAT</c> sets: <c>json</c>, <c>simple</c> or <c>systemd</c>), else <c>systemd</c> under systemd
/// (<c>JOURNAL_STREAM</c> set: one line per entry with its syslog priority, for the journal) and <c>simple</c> on one line
/// otherwise. The formatter's options get defaults below every configuration source, so
/// <c>Logging:Console:FormatterOptions:*</c> from appsettings.json or the environment still wins.
/// </summary>
internal static class ConsoleLogging
{
    public const string FormatterNameKey = "Logging:Console:FormatterName";
    private const string Options = "Logging:Console:FormatterOptions:";

    public static void Add(ConfigurationManager configuration, ILoggingBuilder logging, IReadOnlyDictionary<string, string?>? environment)
    {
        var formatter = configuration[FormatterNameKey];
        var defaults = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        if (string.IsNullOrWhiteSpace(formatter))
        {
            var journal = environment is not null ? environment.GetValueOrDefault("JOURNAL_STREAM") : Environment.GetEnvironmentVariable("JOURNAL_STREAM");
            formatter = string.IsNullOrEmpty(journal) ? ConsoleFormatterNames.Simple : ConsoleFormatterNames.Systemd;
            defaults[FormatterNameKey] = formatter;
        }
        if (formatter.Equals(ConsoleFormatterNames.Json, StringComparison.OrdinalIgnoreCase))
        {
            // Scopes carry the task's id, name, queue, attempt and trace id on every line about it.
            defaults[Options + "IncludeScopes"] = "true";
            defaults[Options + "UseUtcTimestamp"] = "true";
            defaults[Options + "TimestampFormat"] = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
        }
        else if (formatter.Equals(ConsoleFormatterNames.Simple, StringComparison.OrdinalIgnoreCase))
        {
            defaults[Options + "SingleLine"] = "true";
            defaults[Options + "TimestampFormat"] = "HH:mm:ss ";
        }
        configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = defaults });
        logging.AddConsole();
    }

    /// <summary>The formatter name of a <c>LOG_FORMAT</c> value.</summary>
    public static string FormatterOf(string value) => value.Trim().ToLowerInvariant() switch
    {
        "json" => ConsoleFormatterNames.Json,
        "simple" or "text" => ConsoleFormatterNames.Simple,
        "systemd" or "journal" => ConsoleFormatterNames.Systemd,
        _ => throw new ConveyorConfigurationException($"LOG_FORMAT '{value}' is not a format; use json, simple or systemd."),
    };
}
