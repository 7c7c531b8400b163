namespace Conveyor.Backends;

/// <summary>A unique key and the task that claimed it.</summary>
/// <param name="Key">The key.</param>
/// <param name="TaskId">The task that holds it.</param>
/// <param name="ClaimedAt">When it was claimed: a claim whose task is not stored yet (its enqueue is on the way) holds
/// for <see cref="UniqueKeys.PendingClaim"/> from then.</param>
/// <param name="Window">How long after its task finishes the key stays held.</param>
public sealed record UniqueClaim(string Key, Guid TaskId, DateTimeOffset ClaimedAt, TimeSpan Window);

/// <summary>A page of claims and where the next page begins (null after the last).</summary>
/// <param name="Claims">The claims of this page.</param>
/// <param name="NextCursor">Opaque: pass it back for the next page; null when there is none.</param>
public sealed record UniqueClaimPage(IReadOnlyList<UniqueClaim> Claims, string? NextCursor);

/// <summary>
/// The unique-key part of the coordination role: which task claimed each key, changed by compare-and-set on the task id.
/// Whether a claim still holds — its task queued or running, or finished within its window — is the core's to judge
/// from the task's state (<see cref="UniqueKeys"/>), so a claim needs no release when its task ends: a crash, a cancel
/// from another process or retention cannot leave a key held by a finished task.
/// </summary>
public interface IUniqueKeyStore
{
    /// <summary>The claim of <paramref name="key"/>, or null.</summary>
    Task<UniqueClaim?> GetUniqueClaimAsync(string key, CancellationToken cancellationToken);

    /// <summary>Stores <paramref name="claim"/> if the key has no claim (<paramref name="replacing"/> null) or its claim is
    /// still <paramref name="replacing"/>'s; false, changing nothing, otherwise.</summary>
    Task<bool> TryClaimUniqueKeyAsync(UniqueClaim claim, Guid? replacing, CancellationToken cancellationToken);

    /// <summary>Removes the claim of <paramref name="key"/> if <paramref name="taskId"/> holds it (an enqueue that claimed
    /// it and then failed to store its task).</summary>
    Task ReleaseUniqueKeyAsync(string key, Guid taskId, CancellationToken cancellationToken);

    /// <summary>Every claim, a page of about <paramref name="limit"/> at a time from <paramref name="cursor"/> (null for the
    /// first page), for the sweep that removes claims that no longer hold. A claim changed or added during the listing
    /// may be missed or listed twice; every claim present throughout is listed.</summary>
    Task<UniqueClaimPage> ListUniqueClaimsAsync(string? cursor, int limit, CancellationToken cancellationToken);
}
