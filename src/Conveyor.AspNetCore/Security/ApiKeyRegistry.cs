using System.Collections.Concurrent;
using System.Security.Cryptography;
using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// The keys this server accepts: those of its configuration (<see cref="ConfiguredApiKeys"/>) and those stored in the
/// backend (<see cref="IApiKeyStore"/>). Stored keys are held in a snapshot refreshed every
/// <see cref="ConveyorApiOptions.ApiKeyRefreshInterval"/>, so checking a key costs no round trip; a key the snapshot
/// does not know yet (just created by another process) is looked up once by its hash. Uses are counted in memory and
/// written in one batch per refresh: never a write per request.
/// </summary>
internal sealed partial class ApiKeyRegistry
{
    private readonly IReadOnlyList<ApiCaller> _configured;
    private readonly IApiKeyStore? _store;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _uses = new(StringComparer.Ordinal);
    private readonly IUserStore? _userStore;
    private volatile Snapshot _stored = Snapshot.Unknown;
    private volatile Dictionary<string, StoredUser> _users = new(StringComparer.Ordinal);

    public ApiKeyRegistry(IOptions<ConveyorApiOptions> options, IConveyorBackend backend, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(backend);
        _configured = ConfiguredApiKeys.Read(options.Value);
        _store = backend.ApiKeys;
        _userStore = backend.Users;
        _time = time;
        if (_store is null)
        {
            _stored = Snapshot.Empty;
        }
    }

    /// <summary>Whether the API needs a key: keys are configured, or the backend holds a key, revoked or not (revoking the
    /// last key must not open the API). Until the stored keys were read once, true: a server whose store cannot be read
    /// stays closed rather than open.</summary>
    public bool Required => _configured.Count > 0 || _stored.AnyStored || _users.Count > 0;

    /// <summary>Whether the stored keys were read at least once (or there is no store).</summary>
    public bool Known => !ReferenceEquals(_stored, Snapshot.Unknown);

    /// <summary>Whether keys are configured (not counting stored ones).</summary>
    public bool HasConfiguredKeys => _configured.Count > 0;

    /// <summary>The caller <paramref name="presented"/> stands for, or null when it is no valid key.</summary>
    public async ValueTask<ApiCaller?> AuthenticateAsync(string presented, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(presented);
        var hash = ApiKeyFormat.Hash(presented);
        // Every configured key is compared, in fixed time, so neither which one matched nor how much of it shows in the time.
        ApiCaller? match = null;
        foreach (var key in _configured)
        {
            if (CryptographicOperations.FixedTimeEquals(hash, key.Hash))
            {
                match = key;
            }
        }
        if (match is not null || _store is null)
        {
            return match;
        }
        // A dictionary lookup by the hash of the presented key: its timing can tell at most how a hash of a 256-bit secret
        // compares with another's, which helps no one find a key.
        var hex = Convert.ToHexStringLower(hash);
        var snapshot = _stored;
        if (!snapshot.ByHash.TryGetValue(hex, out match))
        {
            var stored = await _store.FindApiKeyAsync(hex, cancellationToken).ConfigureAwait(false);
            if (stored is null || stored.RevokedAt is not null)
            {
                return null;
            }
            match = ToCaller(stored);
            Remember(stored);
        }
        _uses[match.KeyId] = _time.GetUtcNow();
        return match;
    }

    /// <summary>The user of this name as last read or remembered; null when unknown.</summary>
    public StoredUser? FindUser(string name) => _users.GetValueOrDefault(name);

    /// <summary>The configured or stored (and not revoked) key with this id, from memory; null when unknown.</summary>
    public ApiCaller? FindById(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        if (DashboardUsers.ParseSessionId(id) is var (name, kind))
        {
            return _users.TryGetValue(name, out var user) ? DashboardUsers.ToCaller(user, kind) : null;
        }
        return _configured.FirstOrDefault(k => k.KeyId == id) ?? _stored.ById.GetValueOrDefault(id);
    }

    /// <summary>Writes the uses counted since the last call, then reads the stored keys again.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        if (_userStore is not null)
        {
            var users = await _userStore.ListUsersAsync(cancellationToken).ConfigureAwait(false);
            // Without their TOTP secrets: sessions never need them, and a secret kept in memory is one more copy in clear.
            _users = users.ToDictionary(u => u.Name, u => u with { MfaSecret = null }, StringComparer.Ordinal);
        }
        if (_store is null)
        {
            return;
        }
        await FlushUsesAsync(cancellationToken).ConfigureAwait(false);
        var keys = await _store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false);
        _stored = Snapshot.Of(keys.Where(k => k.RevokedAt is null).Select(k => (k, ToCaller(k))), anyStored: keys.Count > 0);
    }

    /// <summary>Writes the uses counted since the last call in one batch.</summary>
    public async Task FlushUsesAsync(CancellationToken cancellationToken)
    {
        if (_store is null || _uses.IsEmpty)
        {
            return;
        }
        var batch = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        foreach (var id in _uses.Keys)
        {
            if (_uses.TryRemove(id, out var at) && !id.StartsWith("config-", StringComparison.Ordinal))
            {
                batch[id] = at;
            }
        }
        await _store.RecordApiKeyUsesAsync(batch, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Forgets a key at once (revoked through this server); other servers forget it at their next refresh.</summary>
    public void Forget(string id)
    {
        var current = _stored;
        if (current.ById.ContainsKey(id))
        {
            _stored = Snapshot.Of(current.Keys.Where(k => k.Stored.Id != id), anyStored: true);
        }
    }

    /// <summary>Replaces a user in memory at once (signed in, enrolled or changed through this server); other servers
    /// read it at their next refresh.</summary>
    public void RememberUser(StoredUser user)
    {
        ArgumentNullException.ThrowIfNull(user);
        _users = new Dictionary<string, StoredUser>(_users, StringComparer.Ordinal) { [user.Name] = user with { MfaSecret = null } };
    }

    /// <summary>Adds a stored key to the snapshot (created through this server, or just found by its hash).</summary>
    public void Remember(StoredApiKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var current = _stored;
        if (key.RevokedAt is null && !current.ById.ContainsKey(key.Id))
        {
            _stored = Snapshot.Of(current.Keys.Append((key, ToCaller(key))), anyStored: true);
        }
    }

    private static ApiCaller ToCaller(StoredApiKey key) => new(key.Id, key.Name, key.Scopes.ToHashSet(StringComparer.Ordinal),
        key.Queues.ToHashSet(StringComparer.Ordinal), Convert.FromHexString(key.Hash));

    private sealed class Snapshot
    {
        /// <summary>Before the store was read: no stored key known, and keys required until it is read.</summary>
        public static readonly Snapshot Unknown = new([], anyStored: true);

        public static readonly Snapshot Empty = new([], anyStored: false);

        private Snapshot(IReadOnlyList<(StoredApiKey Stored, ApiCaller Caller)> keys, bool anyStored)
        {
            Keys = keys;
            AnyStored = anyStored;
            ByHash = keys.ToDictionary(k => k.Stored.Hash, k => k.Caller, StringComparer.Ordinal);
            ById = keys.ToDictionary(k => k.Stored.Id, k => k.Caller, StringComparer.Ordinal);
        }

        public IReadOnlyList<(StoredApiKey Stored, ApiCaller Caller)> Keys { get; }
        public bool AnyStored { get; }
        public Dictionary<string, ApiCaller> ByHash { get; }
        public Dictionary<string, ApiCaller> ById { get; }

        /// <summary>The valid keys; <paramref name="anyStored"/>: whether the store holds any key, revoked ones included.</summary>
        public static Snapshot Of(IEnumerable<(StoredApiKey, ApiCaller)> keys, bool anyStored) => new(keys.ToList(), anyStored);
    }
}

/// <summary>Reads the stored keys at start and every <see cref="ConveyorApiOptions.ApiKeyRefreshInterval"/>, writing the
/// counted uses each time and once more at shutdown.</summary>
internal sealed partial class ApiKeyRefresher(ApiKeyRegistry registry, IOptions<ConveyorApiOptions> options, TimeProvider time,
    ILogger<ApiKeyRefresher> logger) : BackgroundService
{
    /// <summary>Reads the stored keys once before the server takes requests (the schema is migrated by then: hosted
    /// services start in order, and the backend's comes first), so that a server without keys opens at once.</summary>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await TryRefreshAsync(cancellationToken).ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // While the keys were never read (the backend was down), the API stays closed: try again within a second.
                var wait = registry.Known ? options.Value.ApiKeyRefreshInterval : TimeSpan.FromSeconds(1);
                await Task.Delay(wait, time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            await TryRefreshAsync(stoppingToken).ConfigureAwait(false);
        }
    }

    private async Task TryRefreshAsync(CancellationToken cancellationToken)
    {
        try
        {
            await registry.RefreshAsync(cancellationToken).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        // A backend outage must not end the refresher: the next round tries again.
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRefreshFailed(logger, ex);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await registry.FlushUsesAsync(cancellationToken).ConfigureAwait(false);
        }
        // Shutdown goes on: a lost last-use time is not worth failing it.
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRefreshFailed(logger, ex);
        }
    }

    [LoggerMessage(1, LogLevel.Warning, "Could not read or update the stored API keys; trying again at the next refresh")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception);
}
