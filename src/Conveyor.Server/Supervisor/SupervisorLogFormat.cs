using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Supervisor;

/// <summary>How the console logger of the full stack would write the supervisor's lines: its level for the
/// supervisor's category and its formatter with that formatter's options, resolved from every configuration source so
/// that <see cref="SupervisorConsoleLogger{TCategory}"/> writes the same lines without the logging stack.</summary>
internal sealed record SupervisorLogFormat
{
    /// <summary>The lowest level written (<see cref="LogLevel.None"/>: nothing).</summary>
    public LogLevel MinimumLevel { get; init; } = LogLevel.Information;

    /// <summary>One of <see cref="ConsoleFormatterNames"/>.</summary>
    public string Formatter { get; init; } = ConsoleFormatterNames.Simple;

    /// <summary>The entries' time stamp format, or null for none.</summary>
    public string? TimestampFormat { get; init; }

    /// <summary>Time stamps in UTC rather than local time.</summary>
    public bool UseUtcTimestamp { get; init; }

    /// <summary>The simple formatter's one line per entry.</summary>
    public bool SingleLine { get; init; }

    /// <summary>Whether scopes are written: the supervisor opens none, but the JSON formatter then writes an empty list.</summary>
    public bool IncludeScopes { get; init; }

    /// <summary>The simple formatter's colored level names (decided for this process's standard output).</summary>
    public bool Colors { get; init; }

    /// <summary>The JSON formatter's indented output.</summary>
    public bool JsonIndented { get; init; }

    /// <summary>Entries at this level or above go to standard error instead of standard output.</summary>
    public LogLevel StandardErrorThreshold { get; init; } = LogLevel.None;

    /// <summary>The format the logging of <paramref name="services"/> (built by <c>ConveyorHosts.BuildSupervisorServices</c>)
    /// gives the entries of <paramref name="category"/>.</summary>
    public static SupervisorLogFormat Of(IServiceProvider services, ILogger category)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(category);
        var minimum = LogLevel.None;
        for (var level = LogLevel.Critical; level >= LogLevel.Trace; level--)
        {
            if (category.IsEnabled(level))
            {
                minimum = level;
            }
        }
        var console = services.GetRequiredService<IOptionsMonitor<ConsoleLoggerOptions>>().CurrentValue;
        // The console logger matches formatter names without case, and falls back to the simple one.
        var formatter = console.FormatterName?.ToLowerInvariant() switch
        {
            ConsoleFormatterNames.Json => ConsoleFormatterNames.Json,
            ConsoleFormatterNames.Systemd => ConsoleFormatterNames.Systemd,
            _ => ConsoleFormatterNames.Simple,
        };
        var format = new SupervisorLogFormat { MinimumLevel = minimum, Formatter = formatter, StandardErrorThreshold = console.LogToStandardErrorThreshold };
        switch (formatter)
        {
            case ConsoleFormatterNames.Json:
                var json = services.GetRequiredService<IOptionsMonitor<JsonConsoleFormatterOptions>>().CurrentValue;
                return format with
                {
                    TimestampFormat = json.TimestampFormat,
                    UseUtcTimestamp = json.UseUtcTimestamp,
                    IncludeScopes = json.IncludeScopes,
                    JsonIndented = json.JsonWriterOptions.Indented,
                };
            case ConsoleFormatterNames.Systemd:
                var systemd = services.GetRequiredService<IOptionsMonitor<ConsoleFormatterOptions>>().CurrentValue;
                return format with { TimestampFormat = systemd.TimestampFormat, UseUtcTimestamp = systemd.UseUtcTimestamp, IncludeScopes = systemd.IncludeScopes };
            default:
                var simple = services.GetRequiredService<IOptionsMonitor<SimpleConsoleFormatterOptions>>().CurrentValue;
                return format with
                {
                    TimestampFormat = simple.TimestampFormat,
                    UseUtcTimestamp = simple.UseUtcTimestamp,
                    IncludeScopes = simple.IncludeScopes,
                    SingleLine = simple.SingleLine,
                    Colors = simple.ColorBehavior == LoggerColorBehavior.Enabled
                        || (simple.ColorBehavior == LoggerColorBehavior.Default && !Console.IsOutputRedirected),
                };
        }
    }
}
