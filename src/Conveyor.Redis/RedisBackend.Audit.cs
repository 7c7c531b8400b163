using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>The audit log: <c>B audit</c>, a sorted set whose members (all scored 0) are <c>&lt;ms, 15 digits&gt;:&lt;id&gt;</c>,
/// so that their lexical order is the list's order (time, then id); <c>B auditentries</c>, member → the entry as JSON.
/// Bounded by <see cref="RedisBackendOptions.AuditLimit"/>: an append past it drops the oldest entries.</summary>
public sealed partial class RedisBackend : IAuditLog
{
    // ARGV: B, member, json, limit. Adds the entry, then drops the oldest past the limit.
    private const string AppendAuditScript = """
        local b = ARGV[1]
        redis.call('ZADD', b .. 'audit', 0, ARGV[2])
        redis.call('HSET', b .. 'auditentries', ARGV[2], ARGV[3])
        local over = redis.call('ZCARD', b .. 'audit') - tonumber(ARGV[4])
        if over > 0 then
          local old = redis.call('ZRANGE', b .. 'audit', 0, over - 1)
          for i = 1, #old do
            redis.call('ZREM', b .. 'audit', old[i])
            redis.call('HDEL', b .. 'auditentries', old[i])
          end
        end
        return 0
        """;

    // ARGV: B, exclusive upper bound ('(' + member prefix), limit. Deletes the oldest entries below the bound.
    private const string DeleteAuditScript = """
        local b = ARGV[1]
        local old = redis.call('ZRANGEBYLEX', b .. 'audit', '-', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
        for i = 1, #old do
          redis.call('ZREM', b .. 'audit', old[i])
          redis.call('HDEL', b .. 'auditentries', old[i])
        end
        return #old
        """;

    /// <summary>Members read per round trip while filtering.</summary>
    private const int AuditScanChunk = 500;

    /// <inheritdoc />
    public IAuditLog Audit => this;

    /// <inheritdoc />
    public async Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var stored = entry with { At = DateTimeOffset.FromUnixTimeMilliseconds(entry.At.ToUnixTimeMilliseconds()) };
        await RunAsync(db, AppendAuditScript,
            [_base, AuditMember(stored.At, stored.Id), JsonSerializer.Serialize(stored, AuditJsonOptions), Math.Max(1, _options.AuditLimit)]).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var limit = Math.Max(1, query.Limit);
        // Both upper bounds are exclusive member prefixes: the lower of the two applies.
        string? upper = null;
        if (query.Until is { } until)
        {
            upper = Digits(until.ToUnixTimeMilliseconds() + 1);
        }
        if (query.After is { } after)
        {
            var cursor = AuditMember(after.At, after.Id);
            upper = upper is null || string.CompareOrdinal(cursor, upper) < 0 ? cursor : upper;
        }
        RedisValue min = query.Since is { } since ? Digits(since.ToUnixTimeMilliseconds()) : default;
        RedisValue max = upper is null ? default : (RedisValue)upper;
        var found = new List<AuditEntry>();
        for (long skip = 0; found.Count <= limit; skip += AuditScanChunk)
        {
            var members = await db.SortedSetRangeByValueAsync(_base + "audit", min, max, upper is null ? Exclude.None : Exclude.Stop,
                Order.Descending, skip, AuditScanChunk).ConfigureAwait(false);
            if (members.Length == 0)
            {
                break;
            }
            var values = await db.HashGetAsync(_base + "auditentries", members).ConfigureAwait(false);
            foreach (var value in values)
            {
                // An entry deleted between the two reads is skipped.
                if (value.IsNull || JsonSerializer.Deserialize<AuditEntry>((string)value!, AuditJsonOptions) is not { } entry)
                {
                    continue;
                }
                if ((query.ActionPrefix is not { Length: > 0 } prefix || entry.Action.StartsWith(prefix, StringComparison.Ordinal))
                    && (query.Actor is not { Length: > 0 } actor || entry.Actor == actor))
                {
                    found.Add(entry);
                    if (found.Count > limit)
                    {
                        break;
                    }
                }
            }
            if (members.Length < AuditScanChunk)
            {
                break;
            }
        }
        return AuditPage.Of(found, limit);
    }

    /// <inheritdoc />
    public async Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, DeleteAuditScript, [_base, "(" + Digits(before.ToUnixTimeMilliseconds()), Math.Max(1, limit)]).ConfigureAwait(false);
    }

    private static string AuditMember(DateTimeOffset at, Guid id) => Digits(at.ToUnixTimeMilliseconds()) + ":" + id.ToString("D", CultureInfo.InvariantCulture);

    // 15 digits hold every time up to year 9999, so that lexical order is time order.
    private static string Digits(long ms) => Math.Max(0, ms).ToString("D15", CultureInfo.InvariantCulture);

    private static readonly JsonSerializerOptions AuditJsonOptions = new(JsonSerializerDefaults.Web);
}
