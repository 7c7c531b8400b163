using System.Globalization;
using Conveyor.Backends;
using StackExchange.Redis;

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
        return ParseClaim(key, value!);
    }

    private static UniqueClaim ParseClaim(string key, string value)
    {
        var parts = value.Split('|');
        return new UniqueClaim(key, Guid.Parse(parts[0]),
            DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(parts[1], CultureInfo.InvariantCulture)),
            TimeSpan.FromMilliseconds(long.Parse(parts[2], CultureInfo.InvariantCulture)));
    }

    /// <inheritdoc />
    public async Task<UniqueClaimPage> ListUniqueClaimsAsync(string? cursor, int limit, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        // HSCAN's own cursor: it lists every field present throughout the scan (some maybe twice), never blocking the server
        // the way HGETALL of a large hash would.
        var start = cursor is null ? 0L : long.Parse(cursor, CultureInfo.InvariantCulture);
        var reply = (RedisResult[])(await db.ExecuteAsync("HSCAN", _base + "unique", start, "COUNT", limit).ConfigureAwait(false))!;
        var next = long.Parse((string)reply[0]!, CultureInfo.InvariantCulture);
        var fields = (RedisResult[])reply[1]!;
        var claims = new List<UniqueClaim>(fields.Length / 2);
        for (var i = 0; i + 1 < fields.Length; i += 2)
        {
            claims.Add(ParseClaim((string)fields[i]!, (string)fields[i + 1]!));
        }
        return new UniqueClaimPage(claims, next == 0 ? null : next.ToString(CultureInfo.InvariantCulture));
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
