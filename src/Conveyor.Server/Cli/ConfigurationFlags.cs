using System.CommandLine;
using System.Globalization;

namespace Conveyor.Server.Cli;

/// <summary>Options that map onto configuration keys: a flag that is given wins over the environment and appsettings.json.</summary>
internal sealed class ConfigurationFlags
{
    private readonly List<Func<ParseResult, KeyValuePair<string, string>?>> _readers = [];

    /// <summary>Adds <paramref name="option"/> to <paramref name="command"/>; when given, it sets <paramref name="key"/>
    /// to <paramref name="format"/> of its value (by default the value as invariant text, lists comma-joined).</summary>
    public Option<T> Add<T>(Command command, Option<T> option, string key, Func<T, string>? format = null)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(option);
        _readers.Add(parse =>
        {
            var result = parse.GetResult(option);
            if (result is null || result.Implicit || parse.GetValue(option) is not { } value)
            {
                return null;
            }
            return new(key, format is not null ? format(value) : Format(value));
        });
        return option;
    }

    /// <summary>The configuration keys set by the flags given on this command line.</summary>
    public Dictionary<string, string?> Read(ParseResult parse, Dictionary<string, string?>? into = null)
    {
        var values = into ?? new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var reader in _readers)
        {
            if (reader(parse) is { } pair)
            {
                values[pair.Key] = pair.Value;
            }
        }
        return values;
    }

    private static string Format(object value) => value switch
    {
        string[] list => string.Join(',', list),
        bool flag => flag ? "true" : "false",
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
