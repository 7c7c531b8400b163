using System.Text.Json;

namespace Conveyor.Server.Cli;

/// <summary>JSON written by <c>--json</c>: the API's camelCase shapes, indented for people who read it too.</summary>
internal static class CliJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web) { WriteIndented = true };
}
