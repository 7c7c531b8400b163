using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// The task names that live workers declare in their heartbeats, so that a server takes tasks for handlers that run
/// in other processes (a <c>conveyor server</c> in front of an app's own workers). Read from the registry only when a
/// request names a task this process does not know, and at most once a second.
/// </summary>
internal sealed class DeclaredTasks(IConveyorBackend backend, TaskRegistry registry, IOptions<ConveyorOptions> options, TimeProvider time) : IDisposable
{
    private static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(1);
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private volatile Snapshot _snapshot = new(new HashSet<string>(StringComparer.Ordinal), DateTimeOffset.MinValue);

    private sealed record Snapshot(HashSet<string> Names, DateTimeOffset ReadAt);

    /// <summary>Drops from <paramref name="errors"/> the unknown-task errors of names a live worker declares, and makes
    /// the rest name the tasks that are known. Returns whether any error is left.</summary>
    public async Task<bool> ResolveAsync(List<FieldError> errors, CancellationToken cancellationToken)
    {
        if (!errors.Exists(IsUnknownTask))
        {
            return errors.Count > 0;
        }
        var declared = await GetAsync(cancellationToken).ConfigureAwait(false);
        var known = registry.Tasks.Select(t => t.Name).Concat(declared).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        for (var i = errors.Count - 1; i >= 0; i--)
        {
            if (!IsUnknownTask(errors[i]))
            {
                continue;
            }
            var name = errors[i].Message[TaskRequestValidator.UnknownTaskPrefix.Length..^1];
            if (declared.Contains(name))
            {
                errors.RemoveAt(i);
            }
            else
            {
                errors[i] = errors[i] with
                {
                    Message = $"{errors[i].Message}: neither this server nor any live worker declares it; known tasks: {string.Join(", ", known)}",
                };
            }
        }
        return errors.Count > 0;
    }

    private static bool IsUnknownTask(FieldError error) =>
        error.Message.StartsWith(TaskRequestValidator.UnknownTaskPrefix, StringComparison.Ordinal) && error.Message.EndsWith('\'');

    private async Task<HashSet<string>> GetAsync(CancellationToken cancellationToken)
    {
        var snapshot = _snapshot;
        if (time.GetUtcNow() - snapshot.ReadAt < MaxAge)
        {
            return snapshot.Names;
        }
        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            snapshot = _snapshot;
            if (time.GetUtcNow() - snapshot.ReadAt < MaxAge)
            {
                return snapshot.Names;
            }
            var now = time.GetUtcNow();
            var workers = await WorkerListing.ListAsync(backend.Coordination, options.Value.Worker, now, cancellationToken).ConfigureAwait(false);
            var names = workers.Where(w => w.Alive == true).SelectMany(w => w.Tasks).ToHashSet(StringComparer.Ordinal);
            _snapshot = new Snapshot(names, now);
            return names;
        }
        finally
        {
            _refresh.Release();
        }
    }

    public void Dispose() => _refresh.Dispose();
}
