using Conveyor.Backends;

namespace Conveyor.Testing;

public sealed partial class InMemoryBackend : IAuditLog
{
    /// <inheritdoc />
    public IAuditLog Audit => this;

    /// <inheritdoc />
    public Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        lock (_storage.Gate)
        {
            _storage.Audit.Add(entry with { At = Millis(entry.At) });
            return Task.CompletedTask;
        }
    }

    /// <inheritdoc />
    public Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        lock (_storage.Gate)
        {
            var limit = Math.Max(1, query.Limit);
            var entries = _storage.Audit
                .Where(e => query.ActionPrefix is not { Length: > 0 } prefix || e.Action.StartsWith(prefix, StringComparison.Ordinal))
                .Where(e => query.Actor is not { Length: > 0 } actor || e.Actor == actor)
                .Where(e => query.Since is not { } since || e.At >= Millis(since))
                .Where(e => query.Until is not { } until || e.At <= Millis(until))
                .Where(e => query.After is not { } after || after.Precedes(e))
                .OrderByDescending(e => e.At).ThenByDescending(e => e.IdText, StringComparer.Ordinal)
                .Take(limit + 1)
                .ToList();
            return Task.FromResult(AuditPage.Of(entries, limit));
        }
    }

    /// <inheritdoc />
    public Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken)
    {
        lock (_storage.Gate)
        {
            var doomed = _storage.Audit.Where(e => e.At < Millis(before))
                .OrderBy(e => e.At).ThenBy(e => e.IdText, StringComparer.Ordinal).Take(Math.Max(1, limit)).ToHashSet();
            return Task.FromResult(_storage.Audit.RemoveAll(doomed.Contains));
        }
    }
}
