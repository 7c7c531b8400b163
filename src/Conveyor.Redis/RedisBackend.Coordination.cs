using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

public sealed partial class RedisBackend
{
    /// <inheritdoc />
    public async Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(worker);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var info = JsonSerializer.Serialize(worker, ConveyorJson.Options);
        var transaction = db.CreateTransaction();
        _ = transaction.HashSetAsync(_base + "workers", worker.Id, info);
        _ = transaction.SortedSetAddAsync(_base + "workers:hb", worker.Id, worker.HeartbeatAt.ToUnixTimeMilliseconds());
        await transaction.ExecuteAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var transaction = db.CreateTransaction();
        _ = transaction.HashDeleteAsync(_base + "workers", workerId);
        _ = transaction.SortedSetRemoveAsync(_base + "workers:hb", workerId);
        await transaction.ExecuteAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var ids = await db.SortedSetRangeByScoreAsync(_base + "workers:hb", seenSince.ToUnixTimeMilliseconds(), double.PositiveInfinity).ConfigureAwait(false);
        if (ids.Length == 0)
        {
            return [];
        }
        var infos = await db.HashGetAsync(_base + "workers", ids).ConfigureAwait(false);
        return infos.Where(i => !i.IsNull)
            .Select(i => JsonSerializer.Deserialize<WorkerInfo>((string)i!, ConveyorJson.Options)!)
            .OrderBy(w => w.Id, StringComparer.Ordinal)
            .ToList();
    }

    /// <inheritdoc />
    public async Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var now = Now();
        var reply = await RunAsync(db, RedisScripts.AcquireLeadership, [_base, name, owner, Ms(now), Ms(now + (long)ttl.TotalMilliseconds)]).ConfigureAwait(false);
        return (int)reply == 1;
    }

    /// <inheritdoc />
    public async Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        await RunAsync(db, RedisScripts.ReleaseLeadership, [_base, name, owner]).ConfigureAwait(false);
    }
}
