using System.Text;
using Conveyor.Backends;
using Conveyor.Conformance;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>Encryption at rest on SQLite: every column of every row of the database file, read by SQL.</summary>
public sealed class SqliteEncryptionAtRestTests : EncryptionAtRestConformance<SqliteTestBackend>
{
    protected override Task<string> ReadRawAsync(IConveyorBackend backend, CancellationToken cancellationToken) =>
        ReadAllRowsAsync(((SqliteBackend)backend).DatabasePath, cancellationToken);

    /// <summary>Every value of every table in the file, as text (blobs as UTF-8).</summary>
    public static async Task<string> ReadAllRowsAsync(string path, CancellationToken cancellationToken)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(cancellationToken);
        var tables = new List<string>();
        await using (var list = connection.CreateCommand())
        {
            list.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table'";
            await using var reader = await list.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                tables.Add(reader.GetString(0));
            }
        }
        Assert.Contains("tasks", tables);
        var text = new StringBuilder();
        foreach (var table in tables)
        {
            await using var select = connection.CreateCommand();
            select.CommandText = $"SELECT * FROM \"{table.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";
            await using var reader = await select.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                for (var i = 0; i < reader.FieldCount; i++)
                {
                    text.Append(reader.GetValue(i) switch
                    {
                        byte[] bytes => Encoding.UTF8.GetString(bytes),
                        var value => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture),
                    }).Append('\t');
                }
                text.Append('\n');
            }
        }
        return text.ToString();
    }
}
