using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend : IPayloadStore
{
    /// <inheritdoc />
    public IPayloadStore Payloads => this;

    /// <inheritdoc />
    public Task<PayloadRewriteOutcome> RewritePayloadsAsync(IReadOnlyList<PayloadRewrite> rewrites, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rewrites);
        if (rewrites.Count == 0)
        {
            return Task.FromResult(new PayloadRewriteOutcome(0, []));
        }
        // One writer operation: the read and the conditional update run in the writer's transaction, and the update's
        // WHERE compares the text read, so a row another process changed in between is left alone either way.
        return Writer.RunAsync(w =>
        {
            var read = w.Statement($"SELECT {PayloadRow.Columns} FROM tasks WHERE id = $id", "$id");
            var update = w.Statement("""
                UPDATE tasks SET args = $args, result = $result, error = $error, errors = $errors
                WHERE id = $id AND args IS $oldArgs AND result IS $oldResult AND error IS $oldError AND errors IS $oldErrors
                """, "$args", "$result", "$error", "$errors", "$id", "$oldArgs", "$oldResult", "$oldError", "$oldErrors");
            var rewritten = 0;
            var skipped = new List<Guid>();
            foreach (var rewrite in rewrites)
            {
                var id = SqliteDialect.Instance.TaskIdValue(rewrite.TaskId);
                read.Parameters[0].Value = id;
                PayloadRow? stored = null;
                using (var reader = read.ExecuteReader())
                {
                    if (reader.Read())
                    {
                        stored = PayloadRow.Read(reader, 0);
                    }
                }
                if (stored is null || !stored.Parse().Equals(rewrite.Expected))
                {
                    skipped.Add(rewrite.TaskId);
                    continue;
                }
                var replacement = stored.With(rewrite.Expected, rewrite.Replacement);
                update.Parameters[0].Value = Value(replacement.Args);
                update.Parameters[1].Value = Value(replacement.Result);
                update.Parameters[2].Value = Value(replacement.Error);
                update.Parameters[3].Value = Value(replacement.Errors);
                update.Parameters[4].Value = id;
                update.Parameters[5].Value = Value(stored.Args);
                update.Parameters[6].Value = Value(stored.Result);
                update.Parameters[7].Value = Value(stored.Error);
                update.Parameters[8].Value = Value(stored.Errors);
                if (update.ExecuteNonQuery() == 1)
                {
                    rewritten++;
                }
                else
                {
                    skipped.Add(rewrite.TaskId);
                }
            }
            return new PayloadRewriteOutcome(rewritten, skipped);
        }).WaitAsync(cancellationToken);

        static object Value(string? text) => (object?)text ?? DBNull.Value;
    }
}
