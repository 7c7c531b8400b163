using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

public sealed partial class RedisBackend : IPayloadStore
{
    private static readonly RedisValue[] PayloadFields = ["m", "result", "error", "errors"];

    /// <inheritdoc />
    public IPayloadStore Payloads => this;

    /// <inheritdoc />
    public async Task<PayloadRewriteOutcome> RewritePayloadsAsync(IReadOnlyList<PayloadRewrite> rewrites, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rewrites);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var rewritten = 0;
        var skipped = new List<Guid>();
        foreach (var rewrite in rewrites)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var key = (RedisKey)(_base + "t:" + IdText(rewrite.TaskId));
            var stored = await db.HashGetAsync(key, PayloadFields).ConfigureAwait(false);
            if (stored[0].IsNull)
            {
                skipped.Add(rewrite.TaskId);
                continue;
            }
            var blob = (string)stored[0]!;
            var result = (string?)stored[1];
            var error = (string?)stored[2];
            var errors = (string?)stored[3];
            var current = new StoredPayload(RedisMessageCodec.Decode(blob, rewrite.TaskId, null, null).Args, result,
                error is null ? null : JsonSerializer.Deserialize<TaskError>(error, ConveyorJson.Options), TaskHistoryText.ParseErrors(errors));
            if (!current.Equals(rewrite.Expected))
            {
                skipped.Add(rewrite.TaskId);
                continue;
            }
            // A transaction conditioned on the four fields' text as read: a completion or retry in between (which
            // changes at least one of them) makes it write nothing.
            var expected = rewrite.Expected;
            var replacement = rewrite.Replacement;
            var transaction = db.CreateTransaction();
            for (var i = 0; i < PayloadFields.Length; i++)
            {
                transaction.AddCondition(stored[i].IsNull ? Condition.HashNotExists(key, PayloadFields[i]) : Condition.HashEqual(key, PayloadFields[i], stored[i]));
            }
            var writes = new List<Task>();
            if (!string.Equals(expected.Args, replacement.Args, StringComparison.Ordinal))
            {
                writes.Add(transaction.HashSetAsync(key, "m", RedisMessageCodec.WithArgs(blob, replacement.Args)));
            }
            if (!string.Equals(expected.Result, replacement.Result, StringComparison.Ordinal))
            {
                writes.Add(Set(transaction, key, "result", replacement.Result));
            }
            if (!Equals(expected.Error, replacement.Error))
            {
                writes.Add(Set(transaction, key, "error", replacement.Error is null ? null : JsonSerializer.Serialize(replacement.Error, ConveyorJson.Options)));
            }
            if (!expected.Errors.SequenceEqual(replacement.Errors))
            {
                writes.Add(Set(transaction, key, "errors", TaskHistoryText.FormatErrors(replacement.Errors)));
            }
            if (await transaction.ExecuteAsync().ConfigureAwait(false))
            {
                await Task.WhenAll(writes).ConfigureAwait(false);
                rewritten++;
            }
            else
            {
                skipped.Add(rewrite.TaskId);
            }
        }
        return new PayloadRewriteOutcome(rewritten, skipped);
    }

    private static Task<bool> Set(ITransaction transaction, RedisKey key, string field, string? value) =>
        value is null ? transaction.HashDeleteAsync(key, field) : transaction.HashSetAsync(key, field, value);
}
