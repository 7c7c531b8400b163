using System.Data;
using System.Data.Common;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>The statements and row mapping of the <c>users</c> table (<see cref="IUserStore"/>), shared by the SQL
/// backends. Times are ms since the Unix epoch; recovery code hashes one space-separated text.</summary>
public static class UserRows
{
    /// <summary>The columns in the order <see cref="Read"/> reads them and <see cref="Bind"/> gives them.</summary>
    public const string Columns = "name, role, password_hash, created_at, version, mfa_secret, mfa_enabled, recovery_codes, failed_attempts, locked_until, last_totp_step";

    private static readonly string[] ColumnNames = Columns.Split(", ");

    private static readonly DbType[] Types =
    [
        DbType.String, DbType.String, DbType.String, DbType.Int64, DbType.Int64, DbType.String, DbType.Int32, DbType.String,
        DbType.Int32, DbType.Int64, DbType.Int64,
    ];

    /// <summary>The INSERT of one user; nothing when the name is taken (one row affected means added).</summary>
    public static string InsertSql(SqlDialect dialect, string table)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return $"INSERT INTO {table} ({Columns}) VALUES ({string.Join(", ", ColumnNames.Select(dialect.Parameter))}) ON CONFLICT (name) DO NOTHING";
    }

    /// <summary>The compare-and-set UPDATE: the parameters of <see cref="Bind"/> (with the new version) and
    /// <c>expected</c>, the version read.</summary>
    public static string UpdateSql(SqlDialect dialect, string table)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        var sets = ColumnNames.Where(c => c is not "name" and not "created_at").Select(c => $"{c} = {dialect.Parameter(c)}");
        return $"UPDATE {table} SET {string.Join(", ", sets)} WHERE name = {dialect.Parameter("name")} AND version = {dialect.Parameter("expected")}";
    }

    /// <summary>The SELECT of every user, or of one with <c>name</c> when <paramref name="one"/>.</summary>
    public static string SelectSql(SqlDialect dialect, string table, bool one)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return one ? $"SELECT {Columns} FROM {table} WHERE name = {dialect.Parameter("name")}" : $"SELECT {Columns} FROM {table} ORDER BY name";
    }

    /// <summary>The DELETE of the user <c>name</c>.</summary>
    public static string DeleteSql(SqlDialect dialect, string table)
    {
        ArgumentNullException.ThrowIfNull(dialect);
        return $"DELETE FROM {table} WHERE name = {dialect.Parameter("name")}";
    }

    /// <summary>Adds the parameters of <see cref="InsertSql"/> for <paramref name="user"/> stored at
    /// <paramref name="version"/>, and <c>expected</c> when given (<see cref="UpdateSql"/>).</summary>
    public static void Bind(DbCommand command, SqlDialect dialect, StoredUser user, long version, long? expected = null)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(dialect);
        ArgumentNullException.ThrowIfNull(user);
        object?[] values =
        [
            user.Name, user.Role, user.PasswordHash, user.CreatedAt.ToUnixTimeMilliseconds(), version, user.MfaSecret,
            user.MfaEnabled ? 1 : 0, StoredUser.JoinCodes(user.RecoveryCodes), user.FailedAttempts,
            user.LockedUntil?.ToUnixTimeMilliseconds(), user.LastTotpStep,
        ];
        for (var i = 0; i < values.Length; i++)
        {
            Add(command, dialect.Parameter(ColumnNames[i]), Types[i], values[i]);
        }
        if (expected is { } e)
        {
            Add(command, dialect.Parameter("expected"), DbType.Int64, e);
        }
    }

    /// <summary>Adds the <c>name</c> parameter.</summary>
    public static void BindName(DbCommand command, SqlDialect dialect, string name)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(dialect);
        Add(command, dialect.Parameter("name"), DbType.String, name);
    }

    /// <summary>Reads every row of <paramref name="command"/>.</summary>
    public static async Task<IReadOnlyList<StoredUser>> ReadAllAsync(DbCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        var users = new List<StoredUser>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            users.Add(Read(reader));
        }
        return users;
    }

    /// <summary>One row in <see cref="Columns"/> order.</summary>
    public static StoredUser Read(DbDataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new StoredUser(reader.GetString(0), reader.GetString(1), reader.GetString(2),
            DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), reader.GetInt64(4),
            reader.IsDBNull(5) ? null : reader.GetString(5), reader.GetInt32(6) != 0, StoredUser.SplitCodes(reader.GetString(7)),
            reader.GetInt32(8), reader.IsDBNull(9) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(9)),
            reader.IsDBNull(10) ? null : reader.GetInt64(10));
    }

    private static void Add(DbCommand command, string name, DbType type, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.DbType = type;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
    }
}
