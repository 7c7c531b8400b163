namespace Conveyor.Testing;

public sealed partial class InMemoryBackend
{
    /// <inheritdoc />
    public Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(worker);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            _storage.Workers[worker.Id] = worker;
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workerId);
        lock (_storage.Gate)
        {
            _storage.Workers.Remove(workerId);
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            return Task.FromResult<IReadOnlyList<WorkerInfo>>(
                _storage.Workers.Values.Where(w => w.HeartbeatAt >= seenSince).OrderBy(w => w.Id, StringComparer.Ordinal).ToList());
        }
    }

    /// <inheritdoc />
    public Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(owner);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_storage.Gate)
        {
            var now = Now();
            // Taken when free, renewed by its holder, and taken over once its holder let it run out.
            if (_storage.Leaders.TryGetValue(name, out var leader) && leader.Owner != owner && leader.ExpiresAt >= now)
            {
                return Task.FromResult(false);
            }
            _storage.Leaders[name] = (owner, now + ttl);
            return Task.FromResult(true);
        }
    }

    /// <inheritdoc />
    public Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        lock (_storage.Gate)
        {
            if (_storage.Leaders.TryGetValue(name, out var leader) && leader.Owner == owner)
            {
                _storage.Leaders.Remove(name);
            }
        }
        return Task.CompletedTask;
    }
}
