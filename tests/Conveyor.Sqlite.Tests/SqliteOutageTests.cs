using Conveyor.Backends;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>Which SQLite failures count as an outage (the API answers 503 to them), found inside wrapping exceptions too.</summary>
public sealed class SqliteOutageTests
{
    [Theory]
    [InlineData(5, true)] // SQLITE_BUSY: another writer held the lock past the busy timeout
    [InlineData(6, true)] // SQLITE_LOCKED
    [InlineData(10, true)] // SQLITE_IOERR
    [InlineData(13, true)] // SQLITE_FULL
    [InlineData(14, true)] // SQLITE_CANTOPEN
    [InlineData(19, false)] // SQLITE_CONSTRAINT
    [InlineData(1, false)] // SQLITE_ERROR (a bad statement)
    public async Task Sqlite_errors_are_an_outage_only_when_the_file_is_unavailable(int code, bool outage)
    {
        var files = new SqliteTestBackend();
        var backend = await files.CreateAsync(TimeProvider.System);
        try
        {
            var error = new SqliteException("error", code);
            Assert.Equal(outage ? "sqlite" : null, backend.GetUnavailableBackend(error));
            // Wrapped, as by a task continuation or another layer: still found.
            var wrapped = new AggregateException(new InvalidOperationException("wrapper", error));
            Assert.Equal(outage ? "sqlite" : null, BackendOutage.Find(backend, wrapped));
        }
        finally
        {
            await files.DisposeAsync(backend);
        }
    }
}
