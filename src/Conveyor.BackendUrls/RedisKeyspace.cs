using Conveyor.Redis;
using StackExchange.Redis;

namespace Conveyor.Backends;

/// <summary>The keys under a prefix in a Redis database named by a <c>redis://</c> or <c>rediss://</c> URL, holding every
/// role of a backend. Dropping it deletes them.</summary>
/// <param name="Url">The Redis URL (or a StackExchange.Redis configuration string).</param>
/// <param name="KeyPrefix">Conveyor's key prefix, or null for the backend's default (<c>conveyor:</c>).</param>
public sealed record RedisKeyspace(string Url, string? KeyPrefix = null) : BackendLocation
{
    /// <summary>Applies this keyspace to the backend's options.</summary>
    public void Apply(RedisBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Configuration = Url;
        if (KeyPrefix is not null)
        {
            options.KeyPrefix = KeyPrefix;
        }
    }

    /// <inheritdoc />
    public override ConveyorBuilder Use(ConveyorBuilder builder) => builder.UseRedis(Apply);

    /// <inheritdoc />
    public override IConveyorBackend Create(TimeProvider? time = null) => Create(connection: null, time);

    /// <summary>Builds a backend here on <paramref name="connection"/> (not disposed with the backend), or on a connection
    /// of its own when null.</summary>
    public RedisBackend Create(IConnectionMultiplexer? connection, TimeProvider? time = null)
    {
        var options = new RedisBackendOptions();
        Apply(options);
        return new RedisBackend(options, connection, time);
    }

    /// <summary>Deletes every key under the prefix.</summary>
    public override async Task DropAsync(CancellationToken cancellationToken)
    {
        var backend = Create(connection: null);
        await using (backend.ConfigureAwait(false))
        {
            await backend.DeleteKeysAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    /// <remarks><c>REDIS_URL</c>, which selects Redis while <c>DATABASE_URL</c> is not set, and the key prefix.</remarks>
    public override IReadOnlyDictionary<string, string> ToEnvironment()
    {
        var environment = new Dictionary<string, string> { ["REDIS_URL"] = Url };
        if (KeyPrefix is not null)
        {
            environment["CONVEYOR_REDIS__KEY_PREFIX"] = KeyPrefix;
        }
        return environment;
    }

    // Keeps the password out of logs and exception messages.
    /// <inheritdoc />
    public override string ToString() => $"RedisKeyspace {{ Url = {RedisUrl.Redact(Url)}, KeyPrefix = {KeyPrefix} }}";
}
