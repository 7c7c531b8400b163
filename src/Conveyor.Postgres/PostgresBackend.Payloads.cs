using Conveyor.Backends;
using Conveyor.Sql;
using NpgsqlTypes;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend : IPayloadStore
{
    private static readonly string[] PayloadParameters = ["args", "result", "error", "errors", "oldArgs", "oldResult", "oldError", "oldErrors"];

    /// <inheritdoc />
    public IPayloadStore Payloads => this;

    /// <inheritdoc />
    public async Task<PayloadRewriteOutcome> RewritePayloadsAsync(IReadOnlyList<PayloadRewrite> rewrites, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rewrites);
        if (rewrites.Count == 0)
        {
            return new PayloadRewriteOutcome(0, []);
        }
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        var stored = new Dictionary<Guid, PayloadRow>(rewrites.Count);
        await using (var read = Command(connection, $"SELECT id, {PayloadRow.Columns} FROM {_tasks} WHERE id = ANY(@ids)"))
        {
            read.Parameters.AddWithValue("ids", rewrites.Select(r => r.TaskId).ToArray());
            await using var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                stored[reader.GetGuid(0)] = PayloadRow.Read(reader, 1);
            }
        }
        // No lock is held between the read and the updates: each update's WHERE compares the text read, so a row
        // changed in between (a completion, a retry) is left alone.
        await using var update = Command(connection, $"""
            UPDATE {_tasks} SET args = @args, result = @result, error = @error, errors = @errors
            WHERE id = @id AND args IS NOT DISTINCT FROM @oldArgs AND result IS NOT DISTINCT FROM @oldResult
              AND error IS NOT DISTINCT FROM @oldError AND errors IS NOT DISTINCT FROM @oldErrors
            """);
        var parameters = PayloadParameters.Select(name => update.Parameters.Add(name, NpgsqlDbType.Text)).ToArray();
        var id = update.Parameters.Add("id", NpgsqlDbType.Uuid);
        var rewritten = 0;
        var skipped = new List<Guid>();
        foreach (var rewrite in rewrites)
        {
            if (!stored.TryGetValue(rewrite.TaskId, out var row) || !row.Parse().Equals(rewrite.Expected))
            {
                skipped.Add(rewrite.TaskId);
                continue;
            }
            var replacement = row.With(rewrite.Expected, rewrite.Replacement);
            string?[] values = [replacement.Args, replacement.Result, replacement.Error, replacement.Errors, row.Args, row.Result, row.Error, row.Errors];
            for (var i = 0; i < values.Length; i++)
            {
                parameters[i].Value = (object?)values[i] ?? DBNull.Value;
            }
            id.Value = rewrite.TaskId;
            if (await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1)
            {
                rewritten++;
            }
            else
            {
                skipped.Add(rewrite.TaskId);
            }
        }
        return new PayloadRewriteOutcome(rewritten, skipped);
    }
}
