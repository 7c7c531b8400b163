using Conveyor.Backends;
using Npgsql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend : IApiKeyStore
{
    private const string ApiKeyColumns = "id, name, key_hash, scopes, queues, created_at, last_used_at, revoked_at";

    /// <inheritdoc />
    public IApiKeyStore ApiKeys => this;

    /// <inheritdoc />
    public async Task AddApiKeyAsync(StoredApiKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection,
            $"INSERT INTO {_apiKeys} ({ApiKeyColumns}) VALUES (@id, @name, @hash, @scopes, @queues, @created, @used, @revoked)");
        command.Parameters.AddWithValue("id", key.Id);
        command.Parameters.AddWithValue("name", key.Name);
        command.Parameters.AddWithValue("hash", key.Hash);
        command.Parameters.AddWithValue("scopes", StoredApiKey.Join(key.Scopes));
        command.Parameters.AddWithValue("queues", StoredApiKey.Join(key.Queues));
        command.Parameters.AddWithValue("created", key.CreatedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("used", (object?)key.LastUsedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value);
        command.Parameters.AddWithValue("revoked", (object?)key.RevokedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new InvalidOperationException($"An API key with the id '{key.Id}' or the same hash is stored already.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<StoredApiKey?> FindApiKeyAsync(string hash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(hash);
        var keys = await ReadApiKeysAsync("WHERE key_hash = @hash", hash, cancellationToken).ConfigureAwait(false);
        return keys.Count == 0 ? null : keys[0];
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredApiKey>> ListApiKeysAsync(CancellationToken cancellationToken) =>
        ReadApiKeysAsync("ORDER BY created_at, id", null, cancellationToken);

    /// <inheritdoc />
    public async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"UPDATE {_apiKeys} SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL");
        command.Parameters.AddWithValue("at", at.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("id", id);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task RecordApiKeyUsesAsync(IReadOnlyDictionary<string, DateTimeOffset> lastUses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lastUses);
        if (lastUses.Count == 0)
        {
            return;
        }
        // One statement for the whole batch: the ids and times as two arrays.
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"""
            UPDATE {_apiKeys} k SET last_used_at = u.at
            FROM unnest(@ids::text[], @ats::bigint[]) AS u(id, at)
            WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)
            """);
        command.Parameters.AddWithValue("ids", lastUses.Keys.ToArray());
        command.Parameters.AddWithValue("ats", lastUses.Values.Select(v => v.ToUnixTimeMilliseconds()).ToArray());
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<IReadOnlyList<StoredApiKey>> ReadApiKeysAsync(string clause, string? hash, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, $"SELECT {ApiKeyColumns} FROM {_apiKeys} {clause}");
        if (hash is not null)
        {
            command.Parameters.AddWithValue("hash", hash);
        }
        var keys = new List<StoredApiKey>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            keys.Add(new StoredApiKey(reader.GetString(0), reader.GetString(1), reader.GetString(2),
                StoredApiKey.Split(reader.GetString(3)), StoredApiKey.Split(reader.GetString(4)),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
                reader.IsDBNull(6) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
                reader.IsDBNull(7) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7))));
        }
        return keys;
    }
}
