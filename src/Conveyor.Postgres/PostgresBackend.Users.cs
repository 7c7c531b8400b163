using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Postgres;

public sealed partial class PostgresBackend : IUserStore
{
    /// <inheritdoc />
    public IUserStore Users => this;

    /// <inheritdoc />
    public async Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, UserRows.InsertSql(_dialect, _users));
        UserRows.Bind(command, _dialect, user, user.Version);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, UserRows.SelectSql(_dialect, _users, one: true));
        UserRows.BindName(command, _dialect, name);
        var users = await UserRows.ReadAllAsync(command, cancellationToken).ConfigureAwait(false);
        return users.Count == 0 ? null : users[0];
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, UserRows.SelectSql(_dialect, _users, one: false));
        return await UserRows.ReadAllAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, UserRows.UpdateSql(_dialect, _users));
        UserRows.Bind(command, _dialect, user, user.Version + 1, user.Version);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var command = Command(connection, UserRows.DeleteSql(_dialect, _users));
        UserRows.BindName(command, _dialect, name);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }
}
