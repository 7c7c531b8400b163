using Conveyor.Backends;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend : IApiKeyStore
{
    private const string ApiKeyColumns = "id, name, key_hash, scopes, queues, created_at, last_used_at, revoked_at";

    /// <inheritdoc />
    public IApiKeyStore ApiKeys => this;

    /// <inheritdoc />
    public async Task AddApiKeyAsync(StoredApiKey key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        try
        {
            await Writer.RunAsync(w =>
            {
                var command = w.Statement($"INSERT INTO api_keys ({ApiKeyColumns}) VALUES ($id, $name, $hash, $scopes, $queues, $created, $used, $revoked)",
                    "$id", "$name", "$hash", "$scopes", "$queues", "$created", "$used", "$revoked");
                command.Parameters[0].Value = key.Id;
                command.Parameters[1].Value = key.Name;
                command.Parameters[2].Value = key.Hash;
                command.Parameters[3].Value = StoredApiKey.Join(key.Scopes);
                command.Parameters[4].Value = StoredApiKey.Join(key.Queues);
                command.Parameters[5].Value = key.CreatedAt.ToUnixTimeMilliseconds();
                command.Parameters[6].Value = (object?)key.LastUsedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value;
                command.Parameters[7].Value = (object?)key.RevokedAt?.ToUnixTimeMilliseconds() ?? DBNull.Value;
                return command.ExecuteNonQuery();
            }).ConfigureAwait(false);
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19)
        {
            throw new InvalidOperationException($"An API key with the id '{key.Id}' or the same hash is stored already.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<StoredApiKey?> FindApiKeyAsync(string hash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(hash);
        var keys = await ReadApiKeysAsync("WHERE key_hash = $hash", hash, cancellationToken).ConfigureAwait(false);
        return keys.Count == 0 ? null : keys[0];
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredApiKey>> ListApiKeysAsync(CancellationToken cancellationToken) =>
        ReadApiKeysAsync("ORDER BY created_at, id", null, cancellationToken);

    /// <inheritdoc />
    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("UPDATE api_keys SET revoked_at = $at WHERE id = $id AND revoked_at IS NULL", "$at", "$id");
            command.Parameters[0].Value = at.ToUnixTimeMilliseconds();
            command.Parameters[1].Value = id;
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public Task RecordApiKeyUsesAsync(IReadOnlyDictionary<string, DateTimeOffset> lastUses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lastUses);
        if (lastUses.Count == 0)
        {
            return Task.CompletedTask;
        }
        // One write transaction for the whole batch.
        return Writer.RunAsync(w =>
        {
            var command = w.Statement("UPDATE api_keys SET last_used_at = $at WHERE id = $id AND (last_used_at IS NULL OR last_used_at < $at)", "$at", "$id");
            foreach (var (id, at) in lastUses)
            {
                command.Parameters[0].Value = at.ToUnixTimeMilliseconds();
                command.Parameters[1].Value = id;
                command.ExecuteNonQuery();
            }
            return 0;
        });
    }

    private async Task<IReadOnlyList<StoredApiKey>> ReadApiKeysAsync(string clause, string? hash, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {ApiKeyColumns} FROM api_keys {clause}";
        if (hash is not null)
        {
            command.Parameters.AddWithValue("$hash", hash);
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
