using System.Globalization;
using System.Text;

namespace Conveyor.Server.Supervisor;

/// <summary>
/// What <c>conveyor worker --processes N</c> hands to its lean form (<see cref="LeanSupervisor"/>) after it has read and
/// checked every setting: the number of children, their graceful timeout and the log format. (The children and the
/// hand-back processes run the same command line in the same environment, and read the rest of the configuration
/// themselves.) It travels in the environment variable
/// <see cref="VariableName"/> across <c>execve</c>, as <c>name=value</c> pairs joined by <c>&amp;</c>, each side
/// percent-encoded: no serializer is loaded on either side for it.
/// </summary>
/// <param name="Processes">Children kept running.</param>
/// <param name="GracefulTimeout">How long children get to stop before they are killed.</param>
/// <param name="Log">How the supervisor's lines are written.</param>
/// <param name="Spare">Whether a spare child waits beside them (<see cref="ConveyorSupervisor.SpareFor"/>).</param>
internal sealed record SupervisorHandoff(int Processes, TimeSpan GracefulTimeout, SupervisorLogFormat Log, bool Spare = false)
{
    /// <summary>The environment variable; under the <c>CONVEYOR_SUPERVISOR_</c> prefix, which names no setting.</summary>
    public const string VariableName = "CONVEYOR_SUPERVISOR_HANDOFF";

    /// <summary>The variable's value.</summary>
    public string Encode()
    {
        var pairs = new List<(string, string)>
        {
            ("processes", Processes.ToString(CultureInfo.InvariantCulture)),
            ("gracefulTimeout", GracefulTimeout.Ticks.ToString(CultureInfo.InvariantCulture)),
            ("spare", Bool(Spare)),
            ("minimumLevel", Log.MinimumLevel.ToString()),
            ("formatter", Log.Formatter),
            ("useUtcTimestamp", Bool(Log.UseUtcTimestamp)),
            ("singleLine", Bool(Log.SingleLine)),
            ("includeScopes", Bool(Log.IncludeScopes)),
            ("colors", Bool(Log.Colors)),
            ("jsonIndented", Bool(Log.JsonIndented)),
            ("standardErrorThreshold", Log.StandardErrorThreshold.ToString()),
        };
        if (Log.TimestampFormat is { } timestampFormat)
        {
            pairs.Add(("timestampFormat", timestampFormat));
        }
        var text = new StringBuilder();
        foreach (var (name, value) in pairs)
        {
            text.Append(text.Length == 0 ? "" : "&").Append(Uri.EscapeDataString(name)).Append('=').Append(Uri.EscapeDataString(value));
        }
        return text.ToString();

        static string Bool(bool value) => value ? "true" : "false";
    }

    /// <summary>Reads a value written by <see cref="Encode"/>; throws <see cref="FormatException"/> on anything else.</summary>
    public static SupervisorHandoff Decode(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in value.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals < 1)
            {
                throw new FormatException($"{VariableName}: '{pair}' is not name=value.");
            }
            values[Uri.UnescapeDataString(pair[..equals])] = Uri.UnescapeDataString(pair[(equals + 1)..]);
        }
        var log = new SupervisorLogFormat
        {
            MinimumLevel = Enum.Parse<LogLevel>(Required("minimumLevel")),
            Formatter = Required("formatter"),
            TimestampFormat = values.GetValueOrDefault("timestampFormat"),
            UseUtcTimestamp = bool.Parse(Required("useUtcTimestamp")),
            SingleLine = bool.Parse(Required("singleLine")),
            IncludeScopes = bool.Parse(Required("includeScopes")),
            Colors = bool.Parse(Required("colors")),
            JsonIndented = bool.Parse(Required("jsonIndented")),
            StandardErrorThreshold = Enum.Parse<LogLevel>(Required("standardErrorThreshold")),
        };
        return new SupervisorHandoff(int.Parse(Required("processes"), CultureInfo.InvariantCulture),
            TimeSpan.FromTicks(long.Parse(Required("gracefulTimeout"), CultureInfo.InvariantCulture)), log, bool.Parse(Required("spare")));

        string Required(string name) => values.TryGetValue(name, out var text) ? text : throw new FormatException($"{VariableName} has no {name}.");
    }
}
