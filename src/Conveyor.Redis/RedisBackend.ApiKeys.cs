using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using StackExchange.Redis;

namespace Conveyor.Redis;

/// <summary>API keys: <c>B apikeys</c>, a hash of id → the key as JSON (never changed once written); <c>B apikeyhashes</c>,
/// hash → id, to find a key by the hash a request presents; <c>B apikeyused</c> and <c>B apikeyrevoked</c>, id → ms, the
/// last use and the revocation, kept apart so that neither rewrites a key.</summary>
public sealed partial class RedisBackend : IApiKeyStore
{
    // ARGV: B, id, hash, json. Stores both entries unless the id or the hash is taken; 1 when stored.
    private const string AddApiKeyScript = """
        local b = ARGV[1]
        if redis.call('HEXISTS', b .. 'apikeys', ARGV[2]) == 1 or redis.call('HEXISTS', b .. 'apikeyhashes', ARGV[3]) == 1 then
          return 0
        end
        redis.call('HSET', b .. 'apikeys', ARGV[2], ARGV[4])
        redis.call('HSET', b .. 'apikeyhashes', ARGV[3], ARGV[2])
        return 1
        """;

    // ARGV: B, id, ms. 1 when the key is stored and was not revoked yet.
    private const string RevokeApiKeyScript = """
        local b = ARGV[1]
        if redis.call('HEXISTS', b .. 'apikeys', ARGV[2]) == 0 then
          return 0
        end
        return redis.call('HSETNX', b .. 'apikeyrevoked', ARGV[2], ARGV[3])
        """;

    // ARGV: B, then id, ms pairs. Keeps the later of the stored and the given time, for stored keys only.
    private const string RecordApiKeyUsesScript = """
        local b = ARGV[1]
        for i = 2, #ARGV, 2 do
          if redis.call('HEXISTS', b .. 'apikeys', ARGV[i]) == 1 then
            local current = tonumber(redis.call('HGET', b .. 'apikeyused', ARGV[i]) or '0')
            if tonumber(ARGV[i + 1]) > current then
              redis.call('HSET', b .. 'apikeyused', ARGV[i], ARGV[i + 1])
            end
          end
        end
        return 0
        """;

    /// <inheritdoc />
    public IApiKeyStore ApiKeys => this;

    /// <inheritdoc />
    public async Task AddApiKeyAsync(StoredApiKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var json = JsonSerializer.Serialize(new ApiKeyJson(key.Name, key.Hash, StoredApiKey.Join(key.Scopes), StoredApiKey.Join(key.Queues),
            key.CreatedAt.ToUnixTimeMilliseconds()), ApiKeyJsonOptions);
        var stored = (int)await RunAsync(db, AddApiKeyScript, [_base, key.Id, key.Hash, json]).ConfigureAwait(false);
        if (stored != 1)
        {
            throw new InvalidOperationException($"An API key with the id '{key.Id}' or the same hash is stored already.");
        }
        if (key.RevokedAt is { } revoked)
        {
            await RevokeApiKeyAsync(key.Id, revoked, cancellationToken).ConfigureAwait(false);
        }
        if (key.LastUsedAt is { } used)
        {
            await RecordApiKeyUsesAsync(new Dictionary<string, DateTimeOffset> { [key.Id] = used }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async Task<StoredApiKey?> FindApiKeyAsync(string hash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(hash);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var id = await db.HashGetAsync(_base + "apikeyhashes", hash).ConfigureAwait(false);
        if (id.IsNull)
        {
            return null;
        }
        var json = await db.HashGetAsync(_base + "apikeys", id).ConfigureAwait(false);
        var used = await db.HashGetAsync(_base + "apikeyused", id).ConfigureAwait(false);
        var revoked = await db.HashGetAsync(_base + "apikeyrevoked", id).ConfigureAwait(false);
        return json.IsNull ? null : ParseApiKey(id!, json!, used, revoked);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredApiKey>> ListApiKeysAsync(CancellationToken cancellationToken)
    {
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        // A handful of keys: HGETALL is fine here (never on the request path).
        var entries = await db.HashGetAllAsync(_base + "apikeys").ConfigureAwait(false);
        var uses = (await db.HashGetAllAsync(_base + "apikeyused").ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => e.Value);
        var revocations = (await db.HashGetAllAsync(_base + "apikeyrevoked").ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => e.Value);
        return entries.Select(e => ParseApiKey(e.Name!, e.Value!, uses.GetValueOrDefault((string)e.Name!), revocations.GetValueOrDefault((string)e.Name!)))
            .OrderBy(k => k.CreatedAt).ThenBy(k => k.Id, StringComparer.Ordinal).ToList();
    }

    /// <inheritdoc />
    public async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await RunAsync(db, RevokeApiKeyScript, [_base, id, Ms(at)]).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task RecordApiKeyUsesAsync(IReadOnlyDictionary<string, DateTimeOffset> lastUses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lastUses);
        if (lastUses.Count == 0)
        {
            return;
        }
        var db = await GetDatabaseAsync(cancellationToken).ConfigureAwait(false);
        var args = new List<RedisValue>(1 + (lastUses.Count * 2)) { _base };
        foreach (var (id, at) in lastUses)
        {
            args.Add(id);
            args.Add(Ms(at));
        }
        await RunAsync(db, RecordApiKeyUsesScript, [.. args]).ConfigureAwait(false);
    }

    private static StoredApiKey ParseApiKey(string id, string json, RedisValue used, RedisValue revoked)
    {
        var key = JsonSerializer.Deserialize<ApiKeyJson>(json, ApiKeyJsonOptions)!;
        return new StoredApiKey(id, key.Name, key.Hash, StoredApiKey.Split(key.Scopes), StoredApiKey.Split(key.Queues),
            DateTimeOffset.FromUnixTimeMilliseconds(key.CreatedAt),
            Time(used), Time(revoked));
    }

    private static DateTimeOffset? Time(RedisValue ms) =>
        ms.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(long.Parse((string)ms!, CultureInfo.InvariantCulture));

    private static readonly JsonSerializerOptions ApiKeyJsonOptions = new(JsonSerializerDefaults.Web);

    private sealed record ApiKeyJson(string Name, string Hash, string Scopes, string Queues, long CreatedAt);
}
