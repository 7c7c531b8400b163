using System.Data.Common;
using System.Globalization;

namespace Conveyor.Sql.Migrations;

/// <summary>
/// Where a backend records its schema version, and how a migration's text is wrapped to run and record it in one
/// command (one round trip, and inside the caller's transaction where the engine's DDL is transactional).
/// </summary>
public abstract class SqlSchemaJournal
{
    /// <summary>Names the database in errors, such as "The SQLite database".</summary>
    public abstract string Database { get; }

    /// <summary>A statement returning the applied version as one integer, 0 when none.</summary>
    public abstract string ReadVersionSql { get; }

    /// <summary>The text that runs <paramref name="migration"/> and records its version.</summary>
    public abstract string Script(SqlMigration migration);
}

/// <summary>Applies the migrations a database still needs, in order, and records each version as it goes.</summary>
public static class SqlMigrator
{
    /// <summary>Applies the missing migrations on <paramref name="connection"/> (in <paramref name="transaction"/> if the
    /// driver needs it named); returns how many ran. A database at the latest version runs nothing.</summary>
    public static int Apply(DbConnection connection, DbTransaction? transaction, SqlMigrationSet migrations, SqlSchemaJournal journal)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(migrations);
        ArgumentNullException.ThrowIfNull(journal);
        int version;
        using (var read = Command(connection, transaction, journal.ReadVersionSql))
        {
            version = Convert.ToInt32(read.ExecuteScalar(), CultureInfo.InvariantCulture);
        }
        var pending = migrations.After(version, journal.Database);
        foreach (var migration in pending)
        {
            using var migrate = Command(connection, transaction, journal.Script(migration));
            migrate.ExecuteNonQuery();
        }
        return pending.Count;
    }

    /// <summary>The asynchronous <see cref="Apply"/>.</summary>
    public static async Task<int> ApplyAsync(DbConnection connection, DbTransaction? transaction, SqlMigrationSet migrations, SqlSchemaJournal journal, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(migrations);
        ArgumentNullException.ThrowIfNull(journal);
        int version;
        await using (var read = Command(connection, transaction, journal.ReadVersionSql))
        {
            version = Convert.ToInt32(await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
        }
        var pending = migrations.After(version, journal.Database);
        foreach (var migration in pending)
        {
            await using var migrate = Command(connection, transaction, journal.Script(migration));
            await migrate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        return pending.Count;
    }

    private static DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        return command;
    }
}
