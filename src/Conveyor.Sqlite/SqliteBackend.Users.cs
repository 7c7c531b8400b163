using Conveyor.Backends;
using Conveyor.Sql;

namespace Conveyor.Sqlite;

public sealed partial class SqliteBackend : IUserStore
{
    /// <inheritdoc />
    public IUserStore Users => this;

    /// <inheritdoc />
    public Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(UserRows.InsertSql(SqliteDialect.Instance, "users"));
            // Bound afresh each time: the cached statement keeps no parameters between uses.
            command.Parameters.Clear();
            UserRows.Bind(command, SqliteDialect.Instance, user, user.Version);
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public async Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = UserRows.SelectSql(SqliteDialect.Instance, "users", one: true);
        UserRows.BindName(command, SqliteDialect.Instance, name);
        var users = await UserRows.ReadAllAsync(command, cancellationToken).ConfigureAwait(false);
        return users.Count == 0 ? null : users[0];
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = UserRows.SelectSql(SqliteDialect.Instance, "users", one: false);
        return await UserRows.ReadAllAsync(command, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(user);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(UserRows.UpdateSql(SqliteDialect.Instance, "users"));
            command.Parameters.Clear();
            UserRows.Bind(command, SqliteDialect.Instance, user, user.Version + 1, user.Version);
            return command.ExecuteNonQuery() == 1;
        });
    }

    /// <inheritdoc />
    public Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Writer.RunAsync(w =>
        {
            var command = w.Statement(UserRows.DeleteSql(SqliteDialect.Instance, "users"), "$name");
            command.Parameters[0].Value = name;
            return command.ExecuteNonQuery() == 1;
        });
    }
}
