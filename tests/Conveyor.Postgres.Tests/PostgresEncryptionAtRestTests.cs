using System.Text;
using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>Encryption at rest on PostgreSQL: every row of every table of the test's schema, as PostgreSQL's text of the
/// whole row.</summary>
public sealed class PostgresEncryptionAtRestTests : EncryptionAtRestConformance<PostgresTestBackend>
{
    protected override async Task<string> ReadRawAsync(IConveyorBackend backend, CancellationToken cancellationToken)
    {
        var schema = ((PostgresBackend)backend).Schema;
        await using var dataSource = NpgsqlDataSource.Create(PostgresConnectionString.Normalize(TestServers.Postgres));
        var tables = new List<string>();
        await using (var list = dataSource.CreateCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'"))
        {
            list.Parameters.AddWithValue(schema);
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
            var name = $"\"{schema.Replace("\"", "\"\"", StringComparison.Ordinal)}\".\"{table.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";
            await using var select = dataSource.CreateCommand($"SELECT t::text FROM {name} t");
            await using var reader = await select.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                text.Append(reader.GetString(0)).Append('\n');
            }
        }
        return text.ToString();
    }
}
