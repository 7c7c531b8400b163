using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;

namespace Conveyor.Server.Configuration;

/// <summary>
/// The configuration sources of every <c>conveyor</c> command, weakest first: built-in defaults, then the host's
/// usual sources (<c>appsettings.json</c> and <c>appsettings.{Environment}.json</c> in the working directory, then
/// environment variables such as <c>Conveyor__Worker__Concurrency</c>), then the seeds' names
/// (<see cref="ConveyorEnvironmentVariablesSource"/>), then command-line flags.
/// </summary>
internal static class ConveyorConfiguration
{
    public const string Section = "Conveyor";
    public const string LogLevelKey = "Logging:LogLevel:Default";

    /// <summary>Keys whose value is a list, given in the environment or a flag as one comma-separated value.</summary>
    private static readonly string[] ListKeys = ["Conveyor:ApiKeys", "Conveyor:AllowedHosts", "Conveyor:KnownProxies", "Conveyor:Cors:Origins", "Conveyor:Http:AllowedHosts", "Conveyor:Http:AllowedNetworks", "Conveyor:Worker:Queues"];

    private static readonly Dictionary<string, string?> Defaults = new(StringComparer.OrdinalIgnoreCase)
    {
        [LogLevelKey] = "Information",
        // Per-request and start-up chatter; the server prints its own line when it listens.
        ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        ["Logging:LogLevel:Microsoft.Hosting.Lifetime"] = "Warning",
        ["Logging:LogLevel:System.Net.Http.HttpClient"] = "Warning",
    };

    /// <summary>Adds the defaults under, and the seeds' environment names and <paramref name="flags"/> over, the sources the host builder added.</summary>
    /// <param name="configuration">The builder's configuration.</param>
    /// <param name="flags">Configuration keys set by command-line flags.</param>
    /// <param name="environment">Environment variables to read instead of the process's (for tests).</param>
    public static void AddSources(IConfigurationManager configuration, IReadOnlyDictionary<string, string?> flags,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = Defaults });
        configuration.Add(new ConveyorEnvironmentVariablesSource(environment));
        var normalized = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in flags)
        {
            if (value is not null)
            {
                Set(normalized, key, value);
            }
        }
        configuration.AddInMemoryCollection(normalized);
    }

    /// <summary>Sets <paramref name="key"/>, splitting comma-separated list settings into indexed entries and
    /// turning log-level names used elsewhere (<c>info</c>, <c>WARN</c>) into .NET's.</summary>
    public static void Set(Dictionary<string, string?> data, string key, string value)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (key.Equals(LogLevelKey, StringComparison.OrdinalIgnoreCase))
        {
            data[LogLevelKey] = NormalizeLogLevel(value);
            return;
        }
        if (key.Equals(Hosting.ConsoleLogging.FormatterNameKey, StringComparison.OrdinalIgnoreCase))
        {
            data[Hosting.ConsoleLogging.FormatterNameKey] = Hosting.ConsoleLogging.FormatterOf(value);
            return;
        }
        var listKey = ListKeys.FirstOrDefault(k => k.Equals(key, StringComparison.OrdinalIgnoreCase));
        if (listKey is null)
        {
            data[key] = value;
            return;
        }
        var index = 0;
        foreach (var item in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            data[$"{listKey}:{index++}"] = item;
        }
    }

    /// <summary>.NET's name of a log level given as .NET, Python or syslog names it.</summary>
    public static string NormalizeLogLevel(string value) => value.Trim().ToLowerInvariant() switch
    {
        "trace" => "Trace",
        "debug" => "Debug",
        "info" or "information" => "Information",
        "warn" or "warning" => "Warning",
        "error" => "Error",
        "critical" or "fatal" => "Critical",
        "none" or "off" => "None",
        _ => throw new ConveyorConfigurationException(
            $"LOG_LEVEL '{value}' is not a level; use trace, debug, information, warning, error, critical or none."),
    };
}
