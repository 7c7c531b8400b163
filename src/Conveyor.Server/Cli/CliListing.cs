using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Cli;

/// <summary>How the <c>list</c> commands write what they list: JSON for scripts with <c>--json</c>, else a table with a
/// header, or a hint when there is nothing.</summary>
internal static class CliListing
{
    /// <summary>Writes <paramref name="items"/> as JSON, as a hint when empty, or as a table of <paramref name="header"/>
    /// and one row an item.</summary>
    public static void Write<T>(TextWriter output, IReadOnlyList<T> items, bool json, string whenEmpty, string[] header, Func<T, string[]> row)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(items);
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(items, CliJson.Options));
            return;
        }
        if (items.Count == 0)
        {
            output.WriteLine(whenEmpty);
            return;
        }
        var rows = new List<string[]> { header };
        rows.AddRange(items.Select(row));
        var text = new StringBuilder();
        InfoCommand.AppendTable(text, rows, rightAligned: _ => false);
        output.Write(text.ToString());
    }

    /// <summary>A time in a table cell: UTC to the second, or <c>-</c>.</summary>
    public static string Time(DateTimeOffset? at) => at is { } t ? t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture) : "-";
}
