namespace Conveyor.Backends;

/// <summary>The payload fields of a task as the backend stores them (encrypted or in clear): what
/// <see cref="IPayloadStore.RewritePayloadsAsync"/> compares and writes.</summary>
/// <param name="Args">Arguments (JSON text).</param>
/// <param name="Result">Result (JSON text).</param>
/// <param name="Error">The last error.</param>
/// <param name="Errors">The error of every failed attempt, oldest first.</param>
public sealed record StoredPayload(string? Args, string? Result, TaskError? Error, IReadOnlyList<AttemptError> Errors)
{
    /// <summary>The payload fields of <paramref name="record"/>.</summary>
    public static StoredPayload From(TaskRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return new StoredPayload(record.Args, record.Result, record.Error, record.Errors);
    }

    /// <summary>Compares every field, the attempt errors one by one.</summary>
    public bool Equals(StoredPayload? other) =>
        other is not null && string.Equals(Args, other.Args, StringComparison.Ordinal) && string.Equals(Result, other.Result, StringComparison.Ordinal)
        && Equals(Error, other.Error) && (Errors ?? []).SequenceEqual(other.Errors ?? []);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Args, Result, Error, Errors?.Count ?? 0);
}

/// <summary>One compare-and-set of <see cref="IPayloadStore.RewritePayloadsAsync"/>: the task's payload becomes
/// <paramref name="Replacement"/> only if it is still <paramref name="Expected"/>.</summary>
/// <param name="TaskId">The task.</param>
/// <param name="Expected">The payload as read; compared with the stored one.</param>
/// <param name="Replacement">The payload to store. Its <see cref="StoredPayload.Errors"/> must have as many entries as
/// the expected ones, each for the same attempt, time and error type: only messages and details change.</param>
public sealed record PayloadRewrite(Guid TaskId, StoredPayload Expected, StoredPayload Replacement);

/// <summary>What <see cref="IPayloadStore.RewritePayloadsAsync"/> did.</summary>
/// <param name="Rewritten">Tasks whose payload was replaced.</param>
/// <param name="Skipped">Tasks left alone: their stored payload was no longer the expected one (a completion, a retry,
/// another rewrite came in between) or the task is gone.</param>
public sealed record PayloadRewriteOutcome(int Rewritten, IReadOnlyList<Guid> Skipped);

/// <summary>
/// Rewrites stored task payloads in place, for <c>conveyor keys rotate-data</c> (re-encryption with the current key):
/// each write is a compare-and-set on the stored text of the arguments, result, last error and attempt errors, so a
/// task that completes, fails or is retried while the rewrite runs is never overwritten with what was read before.
/// Works on the stored text: <see cref="Encryption.EncryptingBackend"/> forwards it without encrypting.
/// </summary>
public interface IPayloadStore
{
    /// <summary>Applies each rewrite whose task still stores its expected payload; the others are skipped. State,
    /// attempts, times and every other field are left alone.</summary>
    Task<PayloadRewriteOutcome> RewritePayloadsAsync(IReadOnlyList<PayloadRewrite> rewrites, CancellationToken cancellationToken);
}
