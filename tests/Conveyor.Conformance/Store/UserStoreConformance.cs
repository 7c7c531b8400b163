namespace Conveyor.Conformance;

/// <summary>The dashboard's users of the store role (<see cref="IUserStore"/>): added once per name, read and listed
/// whole, changed only by compare-and-set on the version, removed.</summary>
public abstract class UserStoreConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IUserStore Users => Backend.Users ?? throw new InvalidOperationException($"{Backend.Name} keeps no users.");

    private StoredUser NewUser(string name, string role = "read") =>
        new(name, role, "AQAAAAIAAYagAAAAEhash-" + name, DateTimeOffset.FromUnixTimeMilliseconds(Now.ToUnixTimeMilliseconds()));

    // Records compare lists by reference: compare the codes apart.
    private static void AssertSame(StoredUser expected, StoredUser? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(expected.RecoveryCodes, actual.RecoveryCodes);
        Assert.Equal(expected with { RecoveryCodeHashes = null }, actual with { RecoveryCodeHashes = null });
    }

    [Fact]
    public async Task A_user_is_added_once_and_read_back_whole()
    {
        var alice = NewUser("alice", "admin");

        Assert.True(await Users.AddUserAsync(alice, Timeout));
        Assert.False(await Users.AddUserAsync(NewUser("alice", "read"), Timeout));

        AssertSame(alice, await Users.GetUserAsync("alice", Timeout));
        Assert.Null(await Users.GetUserAsync("Alice", Timeout));
        Assert.Null(await Users.GetUserAsync("bob", Timeout));
    }

    [Fact]
    public async Task Users_are_listed_by_name()
    {
        foreach (var name in new[] { "carol", "alice", "bob" })
        {
            await Users.AddUserAsync(NewUser(name), Timeout);
        }

        var users = await Users.ListUsersAsync(Timeout);

        Assert.Equal(["alice", "bob", "carol"], users.Select(u => u.Name));
    }

    [Fact]
    public async Task An_update_stores_every_mutable_field_and_bumps_the_version()
    {
        var alice = NewUser("alice");
        await Users.AddUserAsync(alice, Timeout);
        var changed = alice with
        {
            Role = "admin",
            PasswordHash = "AQAAAAIAAYagAAAAEnew",
            MfaSecret = "enc:secret",
            MfaEnabled = true,
            RecoveryCodeHashes = ["h1", "h2", "h3"],
            FailedAttempts = 4,
            LockedUntil = DateTimeOffset.FromUnixTimeMilliseconds(Now.AddMinutes(15).ToUnixTimeMilliseconds()),
            LastTotpStep = 59_000_123,
        };

        Assert.True(await Users.UpdateUserAsync(changed, Timeout));

        AssertSame(changed with { Version = alice.Version + 1 }, await Users.GetUserAsync("alice", Timeout));
    }

    [Fact]
    public async Task An_update_from_a_stale_read_changes_nothing()
    {
        var alice = NewUser("alice");
        await Users.AddUserAsync(alice, Timeout);
        Assert.True(await Users.UpdateUserAsync(alice with { FailedAttempts = 1 }, Timeout));

        Assert.False(await Users.UpdateUserAsync(alice with { FailedAttempts = 1, RecoveryCodeHashes = [] }, Timeout));

        var stored = await Users.GetUserAsync("alice", Timeout);
        Assert.Equal(1, stored!.FailedAttempts);
        Assert.Equal(alice.Version + 1, stored.Version);
    }

    [Fact]
    public async Task Optional_fields_can_be_cleared()
    {
        var alice = NewUser("alice") with { MfaSecret = "s", MfaEnabled = true, RecoveryCodeHashes = ["h"], LockedUntil = Now.AddMinutes(1), LastTotpStep = 7 };
        await Users.AddUserAsync(alice, Timeout);
        var read = await Users.GetUserAsync("alice", Timeout);

        Assert.True(await Users.UpdateUserAsync(read! with { MfaSecret = null, MfaEnabled = false, RecoveryCodeHashes = [], LockedUntil = null, LastTotpStep = null }, Timeout));

        var stored = await Users.GetUserAsync("alice", Timeout);
        Assert.Null(stored!.MfaSecret);
        Assert.False(stored.MfaEnabled);
        Assert.Empty(stored.RecoveryCodes);
        Assert.Null(stored.LockedUntil);
        Assert.Null(stored.LastTotpStep);
    }

    [Fact]
    public async Task Updating_or_removing_a_missing_user_reports_false()
    {
        Assert.False(await Users.UpdateUserAsync(NewUser("ghost"), Timeout));
        Assert.False(await Users.RemoveUserAsync("ghost", Timeout));
        Assert.Null(await Users.GetUserAsync("ghost", Timeout));
    }

    [Fact]
    public async Task A_removed_user_is_gone_and_its_name_free_again()
    {
        await Users.AddUserAsync(NewUser("alice", "admin"), Timeout);
        await Users.AddUserAsync(NewUser("bob"), Timeout);

        Assert.True(await Users.RemoveUserAsync("alice", Timeout));

        Assert.Null(await Users.GetUserAsync("alice", Timeout));
        Assert.Equal(["bob"], (await Users.ListUsersAsync(Timeout)).Select(u => u.Name));
        Assert.True(await Users.AddUserAsync(NewUser("alice"), Timeout));
        Assert.Equal("read", (await Users.GetUserAsync("alice", Timeout))!.Role);
    }
}
