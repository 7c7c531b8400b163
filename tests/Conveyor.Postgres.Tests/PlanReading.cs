using Conveyor.TestBackends;
using Npgsql;

namespace Conveyor.Postgres.Tests;

/// <summary>What the plan tests share: a statement run on the test server, and an EXPLAIN's lines read as one text.</summary>
internal static class PlanReading
{
    /// <summary>Runs <paramref name="sql"/> on the test server (CONVEYOR_TEST_POSTGRES) on a connection of its own.</summary>
    public static async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(TestServers.Postgres));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>The plan <paramref name="explain"/> (an EXPLAIN command, its parameters bound) answers, a line a row.</summary>
    public static async Task<string> ReadPlanAsync(NpgsqlCommand explain)
    {
        var lines = new List<string>();
        await using var reader = await explain.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            lines.Add(reader.GetString(0));
        }
        return string.Join('\n', lines);
    }
}
