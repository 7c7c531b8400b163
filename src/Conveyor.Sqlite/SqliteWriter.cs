using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite;

/// <summary>A unit of work run by the writer inside a shared transaction.</summary>
internal abstract class WriteOperation
{
    /// <summary>Runs the statements. Runs inside a savepoint: a throw undoes this operation only.</summary>
    public abstract void Execute(SqliteWriter writer);
    /// <summary>Called after the transaction committed: the operation's effects are durable.</summary>
    public abstract void Committed();
    /// <summary>Called when the operation, or the whole transaction, failed.</summary>
    public abstract void Failed(Exception exception);
}

/// <summary>A write operation with a result, and an optional action run on the writer's thread
/// right after the commit, before the caller's continuation is scheduled.</summary>
internal sealed class WriteOperation<T>(Func<SqliteWriter, T> execute, Action? afterCommit = null) : WriteOperation
{
    private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private T? _result;

    public Task<T> Task => _completion.Task;

    public override void Execute(SqliteWriter writer) => _result = execute(writer);

    public override void Committed()
    {
        afterCommit?.Invoke();
        _completion.TrySetResult(_result!);
    }

    public override void Failed(Exception exception) => _completion.TrySetException(exception);
}

/// <summary>
/// The one writing connection of this process. Operations from every caller queue up here and run
/// on a dedicated thread; all those waiting are joined into one transaction (group commit), so a
/// commit, and with <c>synchronous=FULL</c> its fsync, is shared by many enqueues and completions.
/// A caller's task completes only after the commit that made its operation durable.
/// </summary>
internal sealed class SqliteWriter : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly Dictionary<string, SqliteCommand> _statements = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PreparedStatement> _prepared = new(StringComparer.Ordinal);
    private readonly Queue<WriteOperation> _pending = new();
    private readonly object _lock = new();
    private readonly Thread _thread;
    private readonly int _maxPerTransaction;
    private readonly SqliteCheckpointer _checkpointer;
    private readonly Action? _afterCommits;
    private bool _stopping;

    /// <summary>Opens the writing connection and starts its thread. <paramref name="afterCommits"/>, when given, runs on
    /// that thread after the after-commit actions of every committed transaction; it must be quick and must not throw.</summary>
    public SqliteWriter(string connectionString, SqliteBackendOptions options, Action? afterCommits = null)
    {
        _afterCommits = afterCommits;
        _maxPerTransaction = Math.Max(1, options.MaxOperationsPerTransaction);
        _connection = new SqliteConnection(connectionString);
        _connection.Open();
        Pragma("PRAGMA journal_mode = WAL");
        Pragma($"PRAGMA synchronous = {(options.Synchronous == SqliteSynchronous.Full ? "FULL" : "NORMAL")}");
        // A short-sleeping busy handler where the native call is reachable (SqliteBusyHandler says why), else SQLite's own.
        if (!SqliteBusyHandler.TryInstall(_connection, options.BusyTimeout))
        {
            Pragma($"PRAGMA busy_timeout = {(int)options.BusyTimeout.TotalMilliseconds}");
        }
        Pragma("PRAGMA temp_store = MEMORY");
        Pragma($"PRAGMA wal_autocheckpoint = {SqliteCheckpointer.WriterFallbackPages}");
        _checkpointer = new SqliteCheckpointer(connectionString);
        _thread = new Thread(Run) { IsBackground = true, Name = "conveyor-sqlite-writer" };
        _thread.Start();
    }

    public SqliteConnection Connection => _connection;

    /// <summary>Queues an operation and returns its result once committed.</summary>
    public Task<T> RunAsync<T>(Func<SqliteWriter, T> execute) => RunAsync(execute, null);

    /// <summary>Queues an operation and returns its result once committed; <paramref name="afterCommit"/>
    /// runs on the writer's thread as soon as the commit is done. It must be quick and must not throw.</summary>
    public Task<T> RunAsync<T>(Func<SqliteWriter, T> execute, Action? afterCommit)
    {
        var operation = new WriteOperation<T>(execute, afterCommit);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _pending.Enqueue(operation);
            if (_pending.Count == 1)
            {
                Monitor.Pulse(_lock);
            }
        }
        return operation.Task;
    }

    /// <summary>A prepared statement, cached for the life of the connection.</summary>
    public SqliteCommand Statement(string sql, params string[] parameters)
    {
        if (!_statements.TryGetValue(sql, out var command))
        {
            command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var name in parameters)
            {
                command.Parameters.Add(new SqliteParameter(name, null));
            }
            command.Prepare();
            _statements[sql] = command;
        }
        return command;
    }

    /// <summary>A statement bound by position, for per-row statements on the hot path; cached for the life of the connection.
    /// Position <c>i</c> in <paramref name="parameters"/> is parameter <c>i</c> of the Bind methods.</summary>
    public PreparedStatement Prepared(string sql, params string[] parameters)
    {
        if (!_prepared.TryGetValue(sql, out var statement))
        {
            statement = new PreparedStatement(_connection, sql, parameters);
            _prepared[sql] = statement;
        }
        return statement;
    }

    private void Pragma(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private void Run()
    {
        var batch = new List<WriteOperation>();
        while (true)
        {
            lock (_lock)
            {
                while (_pending.Count == 0 && !_stopping)
                {
                    Monitor.Wait(_lock);
                }
                if (_pending.Count == 0 && _stopping)
                {
                    return;
                }
                while (_pending.Count > 0 && batch.Count < _maxPerTransaction)
                {
                    batch.Add(_pending.Dequeue());
                }
            }
            RunBatch(batch);
            batch.Clear();
        }
    }

    private void RunBatch(List<WriteOperation> batch)
    {
        var succeeded = new List<WriteOperation>(batch.Count);
        try
        {
            Exec("BEGIN IMMEDIATE");
        }
        catch (Exception ex) when (ex is SqliteException or InvalidOperationException)
        {
            foreach (var operation in batch)
            {
                operation.Failed(ex);
            }
            return;
        }
        foreach (var operation in batch)
        {
            if (batch.Count == 1)
            {
                try
                {
                    operation.Execute(this);
                    succeeded.Add(operation);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    operation.Failed(ex);
                }
                continue;
            }
            Exec("SAVEPOINT op");
            try
            {
                operation.Execute(this);
                Exec("RELEASE op");
                succeeded.Add(operation);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                try
                {
                    Exec("ROLLBACK TO op");
                    Exec("RELEASE op");
                }
                catch (SqliteException)
                {
                    // The transaction is gone (for example, the disk is full): the commit below fails every operation.
                }
                operation.Failed(ex);
            }
        }
        try
        {
            Exec(succeeded.Count == batch.Count || succeeded.Count > 0 ? "COMMIT" : "ROLLBACK");
        }
        catch (Exception ex) when (ex is SqliteException or InvalidOperationException)
        {
            try
            {
                Exec("ROLLBACK");
            }
            catch (SqliteException)
            {
                // No transaction left to roll back.
            }
            foreach (var operation in succeeded)
            {
                operation.Failed(ex);
            }
            return;
        }
        _checkpointer.Committed();
        foreach (var operation in succeeded)
        {
            operation.Committed();
        }
        _afterCommits?.Invoke();
    }

    // Transaction control runs once or twice per operation: prepared once, without Microsoft.Data.Sqlite's per-call overhead.
    private void Exec(string sql) => Prepared(sql).Execute();

    public void Dispose()
    {
        lock (_lock)
        {
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        _thread.Join();
        _checkpointer.Dispose();
        foreach (var statement in _prepared.Values)
        {
            statement.Dispose();
        }
        foreach (var statement in _statements.Values)
        {
            statement.Dispose();
        }
        _connection.Dispose();
    }
}
