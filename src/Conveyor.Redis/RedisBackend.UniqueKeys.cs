using System.Globalization;
using Conveyor.Backends;

namespace Conveyor.Redis;

public sealed partial class RedisBackend
{
    /// <inheritdoc />
    public async Task<UniqueClaim?> GetUniqueClaimAsync(string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var value = await db.HashGetAsync(_base + "unique", key).ConfigureAwait(false);
        if (value.IsNull)
        {
            return null;
        }
        var parts = ((string)value!).Split('|');
        return new UniqueClaim(key, Guid.Parse(parts[0]),
            DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(parts[1], CultureInfo.InvariantCulture)),
            TimeSpan.FromMilliseconds(long.Parse(parts[2], CultureInfo.InvariantCulture)));
    }

    /// <inheritdoc />
    public async Task<bool> TryClaimUniqueKeyAsync(UniqueClaim claim, Guid? replacing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(claim);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var value = string.Create(CultureInfo.InvariantCulture, $"{claim.TaskId:D}|{claim.ClaimedAt.ToUnixTimeMilliseconds()}|{(long)claim.Window.TotalMilliseconds}");
        var reply = await RunAsync(db, RedisScripts.ClaimUnique, [_base, claim.Key, value, replacing?.ToString("D") ?? ""]).ConfigureAwait(false);
        return (int)reply == 1;
    }

    /// <inheritdoc />
    public async Task ReleaseUniqueKeyAsync(string key, Guid taskId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        await RunAsync(db, RedisScripts.ReleaseUnique, [_base, key, taskId.ToString("D")]).ConfigureAwait(false);
    }
}
