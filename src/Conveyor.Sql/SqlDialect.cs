using System.Data.Common;

namespace Conveyor.Sql;

/// <summary>
/// What differs between SQL engines in the statements this layer builds and the rows it reads. One instance per
/// engine, stateless; a new engine (MySQL/MariaDB, say) is a subclass, not a copy of the store (docs/sql.md).
/// </summary>
public abstract class SqlDialect
{
    /// <summary>The character that starts a parameter in SQL text: <c>$</c> (SQLite), <c>@</c> (PostgreSQL, MySQL).
    /// The same prefixed name is given to the driver's parameter.</summary>
    public abstract char ParameterPrefix { get; }

    /// <summary>A parameter's name as written in SQL text and given to the driver.</summary>
    public string Parameter(string name) => ParameterPrefix + name;

    /// <summary>The clause that keeps the first rows: <c>LIMIT p</c> unless the engine spells it otherwise.</summary>
    public virtual string Limit(string parameter) => "LIMIT " + parameter;

    /// <summary>A table's name as statements write it: <paramref name="name"/> by default; qualified with the schema
    /// where the engine keeps the tables in one (PostgreSQL), so that no statement depends on the connection's
    /// search path.</summary>
    public virtual string Table(string name) => name;

    /// <summary>The predicate of the rare states' partial index (<c>tasks_rare_state</c>: every state but those of
    /// <see cref="StoredStates.EveryTasksPath"/>), written as the engine's index has it: statements repeat it word for word
    /// beside their own state test, since SQLite uses a partial index only when the WHERE clause contains its terms.</summary>
    public virtual string RareStates => "state NOT IN (" + StoredStates.EveryTasksPath + ")";

    /// <summary>A task id as the engine stores it (a uuid, 16 bytes, …).</summary>
    public abstract object TaskIdValue(Guid id);

    /// <summary>Reads a task id stored by <see cref="TaskIdValue"/>.</summary>
    public abstract Guid ReadTaskId(DbDataReader reader, int ordinal);

    /// <summary>A state as bound to a parameter compared with <c>tasks.state</c>; the <c>int</c> by default.</summary>
    public virtual object StateValue(TaskState state) => (int)state;

    /// <summary>Reads <c>tasks.state</c>; an integer column by default.</summary>
    public virtual TaskState ReadState(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return (TaskState)reader.GetInt32(ordinal);
    }

    /// <summary>Reads a flag column (a boolean, or an integer 0/1 where the engine has no boolean).</summary>
    public virtual bool ReadFlag(DbDataReader reader, int ordinal)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return reader.GetBoolean(ordinal);
    }

    /// <summary>An identifier (a schema name) quoted for SQL text: double quotes, any inside doubled.
    /// Engines that quote otherwise (MySQL's backticks) override it.</summary>
    public virtual string QuoteIdentifier(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("An identifier cannot hold a NUL character.", nameof(name));
        }
        return "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }

    /// <summary>Adds a parameter named <see cref="Parameter"/>(<paramref name="name"/>) with a value (null as DBNull).</summary>
    public DbParameter AddParameter(DbCommand command, string name, object? value)
    {
        ArgumentNullException.ThrowIfNull(command);
        var parameter = command.CreateParameter();
        parameter.ParameterName = Parameter(name);
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return parameter;
    }
}
