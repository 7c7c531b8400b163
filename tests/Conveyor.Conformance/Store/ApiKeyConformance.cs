namespace Conveyor.Conformance;

/// <summary>The API keys of the store role (<see cref="IApiKeyStore"/>): stored by hash, found by hash, listed, revoked
/// once, and their last use recorded in batches that never move it back.</summary>
public abstract class ApiKeyConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IApiKeyStore Keys => Backend.ApiKeys ?? throw new InvalidOperationException($"{Backend.Name} keeps no API keys.");

    private static DateTimeOffset Ms(DateTimeOffset at) => DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds());

    private StoredApiKey Key(string id, string hash, string[]? scopes = null, string[]? queues = null) =>
        new(id, $"name of {id}", hash, scopes ?? ["read", "enqueue"], queues ?? [], Ms(Now));

    [Fact]
    public async Task A_key_is_stored_and_found_whole_by_its_hash()
    {
        var key = Key("k1", new string('a', 64), ["enqueue"], ["emails", "reports"]);

        await Keys.AddApiKeyAsync(key, Timeout);

        Assert.Equal(key, await Keys.FindApiKeyAsync(key.Hash, Timeout));
        Assert.Null(await Keys.FindApiKeyAsync(new string('b', 64), Timeout));
    }

    [Fact]
    public async Task A_taken_id_or_hash_is_refused()
    {
        await Keys.AddApiKeyAsync(Key("k1", new string('a', 64)), Timeout);

        await Assert.ThrowsAsync<InvalidOperationException>(() => Keys.AddApiKeyAsync(Key("k1", new string('b', 64)), Timeout));
        await Assert.ThrowsAsync<InvalidOperationException>(() => Keys.AddApiKeyAsync(Key("k2", new string('a', 64)), Timeout));
        Assert.Single(await Keys.ListApiKeysAsync(Timeout));
    }

    [Fact]
    public async Task Keys_are_listed_oldest_first_with_revoked_ones()
    {
        var first = Key("k2", new string('a', 64));
        var second = Key("k1", new string('b', 64)) with { CreatedAt = first.CreatedAt.AddSeconds(1) };
        await Keys.AddApiKeyAsync(second, Timeout);
        await Keys.AddApiKeyAsync(first, Timeout);
        var revokedAt = Ms(Now.AddSeconds(2));

        Assert.True(await Keys.RevokeApiKeyAsync("k1", revokedAt, Timeout));

        Assert.Equal([first, second with { RevokedAt = revokedAt }], await Keys.ListApiKeysAsync(Timeout));
    }

    [Fact]
    public async Task A_key_is_revoked_once_and_stays_findable_as_revoked()
    {
        var key = Key("k1", new string('a', 64));
        await Keys.AddApiKeyAsync(key, Timeout);
        var at = Ms(Now);

        Assert.True(await Keys.RevokeApiKeyAsync("k1", at, Timeout));
        Assert.False(await Keys.RevokeApiKeyAsync("k1", at.AddMinutes(1), Timeout));
        Assert.False(await Keys.RevokeApiKeyAsync("missing", at, Timeout));

        Assert.Equal(at, (await Keys.FindApiKeyAsync(key.Hash, Timeout))!.RevokedAt);
    }

    [Fact]
    public async Task Uses_are_recorded_in_one_batch_and_never_move_back()
    {
        await Keys.AddApiKeyAsync(Key("k1", new string('a', 64)), Timeout);
        await Keys.AddApiKeyAsync(Key("k2", new string('b', 64)), Timeout);
        var later = Ms(Now.AddMinutes(5));
        var earlier = Ms(Now.AddMinutes(1));

        await Keys.RecordApiKeyUsesAsync(new Dictionary<string, DateTimeOffset> { ["k1"] = later, ["k2"] = earlier, ["missing"] = later }, Timeout);
        await Keys.RecordApiKeyUsesAsync(new Dictionary<string, DateTimeOffset> { ["k1"] = earlier }, Timeout);

        var keys = await Keys.ListApiKeysAsync(Timeout);
        Assert.Equal(later, keys.Single(k => k.Id == "k1").LastUsedAt);
        Assert.Equal(earlier, keys.Single(k => k.Id == "k2").LastUsedAt);
        Assert.Equal(2, keys.Count);
    }
}
