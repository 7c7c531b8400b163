using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : IPayloadStore
{
    /// <inheritdoc />
    public IPayloadStore Payloads => this;

    /// <inheritdoc />
    public Task<PayloadRewriteOutcome> RewritePayloadsAsync(IReadOnlyList<PayloadRewrite> rewrites, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rewrites);
        var rewritten = 0;
        var skipped = new List<Guid>();
        lock (_storage.Gate)
        {
            foreach (var rewrite in rewrites)
            {
                if (!_storage.Tasks.TryGetValue(rewrite.TaskId, out var task)
                    || !new StoredPayload(task.Message.Args, task.Result, task.Error, task.Errors).Equals(rewrite.Expected))
                {
                    skipped.Add(rewrite.TaskId);
                    continue;
                }
                var replacement = rewrite.Replacement;
                task.Message = task.Message with { Args = replacement.Args };
                task.Result = replacement.Result;
                task.Error = replacement.Error;
                task.Errors.Clear();
                task.Errors.AddRange(replacement.Errors);
                rewritten++;
            }
        }
        return Task.FromResult(new PayloadRewriteOutcome(rewritten, skipped));
    }
}
