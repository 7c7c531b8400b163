using System.Collections;
using Microsoft.Extensions.Configuration;

namespace Conveyor.Server.Configuration;

/// <summary>
/// Environment variables in the names the seeds' deployments use, mapped onto configuration keys:
/// <c>DATABASE_URL</c>, <c>HOST</c>, <c>PORT</c>, <c>ALLOWED_HOSTS</c>, <c>LOG_LEVEL</c> and <c>LOG_FORMAT</c>, and <c>CONVEYOR_*</c> for everything else.
/// </summary>
/// <remarks>
/// <c>CONVEYOR_X__Y</c> becomes <c>Conveyor:X:Y</c> with the single underscores inside a name dropped, so that
/// upper-case snake names bind to the options' property names: <c>CONVEYOR_WORKER__CONCURRENCY</c> →
/// <c>Conveyor:Worker:Concurrency</c>, <c>CONVEYOR_API_KEYS</c> → <c>Conveyor:ApiKeys</c>,
/// <c>CONVEYOR_HTTP__ALLOWED_HOSTS</c> → <c>Conveyor:Http:AllowedHosts</c>. The list settings among them take
/// comma-separated values. A <c>CONVEYOR_</c> name wins over its short alias (<c>CONVEYOR_DATABASE_URL</c> over <c>DATABASE_URL</c>).
/// </remarks>
internal sealed class ConveyorEnvironmentVariablesSource(IReadOnlyDictionary<string, string?>? variables = null) : IConfigurationSource
{
    public IConfigurationProvider Build(IConfigurationBuilder builder) => new ConveyorEnvironmentVariablesProvider(variables);
}

internal sealed class ConveyorEnvironmentVariablesProvider(IReadOnlyDictionary<string, string?>? variables) : ConfigurationProvider
{
    private const string Prefix = "CONVEYOR_";

    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal)
    {
        ["DATABASE_URL"] = "Conveyor:DatabaseUrl",
        ["REDIS_URL"] = "Conveyor:RedisUrl",
        ["AMQP_URL"] = "Conveyor:AmqpUrl",
        ["HOST"] = "Conveyor:Host",
        ["ALLOWED_HOSTS"] = "Conveyor:AllowedHosts",
        ["PORT"] = "Conveyor:Port",
        ["LOG_LEVEL"] = ConveyorConfiguration.LogLevelKey,
        ["LOG_FORMAT"] = Hosting.ConsoleLogging.FormatterNameKey,
    };

    public override void Load()
    {
        var all = variables ?? ReadProcessEnvironment();
        var data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, key) in Aliases)
        {
            if (all.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value))
            {
                ConveyorConfiguration.Set(data, key, value);
            }
        }
        foreach (var (name, value) in all.OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            if (name.StartsWith(Prefix, StringComparison.Ordinal) && name.Length > Prefix.Length && value is not null)
            {
                ConveyorConfiguration.Set(data, MapName(name[Prefix.Length..]), value);
            }
        }
        Data = data;
    }

    /// <summary>Names that the rule of <see cref="MapName"/> would put at the top of the section, mapped into theirs:
    /// <c>CONVEYOR_ENCRYPTION_KEY</c> reads as the operators' documents write it, yet belongs to <c>Conveyor:Encryption</c>.</summary>
    private static readonly Dictionary<string, string> SectionAliases = new(StringComparer.Ordinal)
    {
        ["ENCRYPTION_KEY"] = "Conveyor:Encryption:Key",
        ["ENCRYPTION_KEY_FILE"] = "Conveyor:Encryption:KeyFile",
    };

    /// <summary><c>WORKER__SHUTDOWN_TIMEOUT</c> → <c>Conveyor:WORKER:SHUTDOWNTIMEOUT</c> (keys are case-insensitive).</summary>
    internal static string MapName(string name) => SectionAliases.TryGetValue(name, out var key)
        ? key
        : "Conveyor:" + string.Join(':', name.Split("__").Select(part => part.Replace("_", "", StringComparison.Ordinal)));

    internal static Dictionary<string, string?> ReadProcessEnvironment()
    {
        var result = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            result[(string)entry.Key] = entry.Value as string;
        }
        return result;
    }
}
