using System.Globalization;
using Conveyor.Backends;

namespace Conveyor.Redis;

public sealed partial class RedisBackend
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredSchedule>> ListSchedulesAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var documents = db.HashGetAllAsync(_base + "schedules");
        var versions = db.HashGetAllAsync(_base + "schedules:v");
        var versionByName = (await versions.ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => (long)e.Value, StringComparer.Ordinal);
        return (await documents.ConfigureAwait(false))
            .Select(e => new StoredSchedule(e.Name!, versionByName.GetValueOrDefault((string)e.Name!), e.Value!))
            .OrderBy(s => s.Name, StringComparer.Ordinal)
            .ToList();
    }

    /// <inheritdoc />
    public async Task<StoredSchedule?> GetScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        // One transaction, so the document and version are read together.
        var transaction = db.CreateTransaction();
        var document = transaction.HashGetAsync(_base + "schedules", name);
        var version = transaction.HashGetAsync(_base + "schedules:v", name);
        await transaction.ExecuteAsync().ConfigureAwait(false);
        var text = await document.ConfigureAwait(false);
        return text.IsNull ? null : new StoredSchedule(name, (long)await version.ConfigureAwait(false), text!);
    }

    /// <inheritdoc />
    public async Task<bool> AddScheduleAsync(StoredSchedule schedule, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var reply = await RunAsync(db, RedisScripts.AddSchedule,
            [_base, schedule.Name, schedule.Version.ToString(CultureInfo.InvariantCulture), schedule.Document]).ConfigureAwait(false);
        return (int)reply == 1;
    }

    /// <inheritdoc />
    public async Task<bool> ReplaceScheduleAsync(StoredSchedule schedule, long expectedVersion, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var reply = await RunAsync(db, RedisScripts.ReplaceSchedule,
            [_base, schedule.Name, schedule.Version.ToString(CultureInfo.InvariantCulture), schedule.Document,
             expectedVersion.ToString(CultureInfo.InvariantCulture)]).ConfigureAwait(false);
        return (int)reply == 1;
    }

    /// <inheritdoc />
    public async Task<bool> DeleteScheduleAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var transaction = db.CreateTransaction();
        var deleted = transaction.HashDeleteAsync(_base + "schedules", name);
        _ = transaction.HashDeleteAsync(_base + "schedules:v", name);
        await transaction.ExecuteAsync().ConfigureAwait(false);
        return await deleted.ConfigureAwait(false);
    }
}
