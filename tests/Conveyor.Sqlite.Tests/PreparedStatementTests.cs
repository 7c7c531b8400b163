using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>The writer's prepared statements: their direct native calls reach the library SQLitePCL loaded, and every
/// kind of value goes in and comes back out as SQLite's own API gives it (empty text and blobs stay empty, not NULL;
/// text longer than the stack buffer and outside ASCII keeps every character).</summary>
public sealed class PreparedStatementTests
{
    [Fact]
    public void The_direct_calls_reach_the_library_SQLitePCL_uses()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();

        Assert.True(SqliteNative.Available, "the statements fall back to SQLitePCL's calls: e_sqlite3 was not reached directly");
    }

    public static TheoryData<string> Texts() => new()
    {
        "",
        "a",
        "naïve — ½ 🚀",
        new string('x', 170),
        new string('é', 171),
        string.Concat(Enumerable.Repeat("🚀", 200)),
        new string('y', 100_000),
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void Text_is_bound_and_read_back_as_it_was(string text)
    {
        using var connection = Open();
        using var insert = new PreparedStatement(connection, "INSERT INTO t (text) VALUES ($text)", ["$text"]);
        insert.Bind(0, text);
        Assert.Equal(1, insert.Execute());

        using var select = new PreparedStatement(connection, "SELECT text, typeof(text), length(text) FROM t", []);
        Assert.True(select.Read());
        try
        {
            Assert.False(select.IsNull(0));
            Assert.Equal(text, select.GetString(0));
            Assert.Equal("text", select.GetString(1));
            Assert.Equal(text.EnumerateRunes().Count(), select.GetInt64(2));
        }
        finally
        {
            select.Reset();
        }
    }

    [Fact]
    public void Null_empty_and_filled_values_of_every_kind_are_kept_apart()
    {
        using var connection = Open();
        using var insert = new PreparedStatement(
            connection, "INSERT INTO t (text, blob, number, real) VALUES ($text, $blob, $number, $real)", ["$text", "$blob", "$number", "$real"]);
        insert.Bind(0, (string?)null);
        insert.Bind(1, ReadOnlySpan<byte>.Empty);
        insert.Bind(2, (long?)null);
        insert.Bind(3, 0.5);
        insert.Execute();
        insert.Bind(0, "");
        insert.Bind(1, [1, 2, 3]);
        insert.Bind(2, long.MinValue);
        insert.BindNull(3);
        insert.Execute();

        using var select = new PreparedStatement(
            connection, "SELECT text, typeof(text), blob, typeof(blob), number, real FROM t ORDER BY rowid", []);
        try
        {
            Assert.True(select.Read());
            Assert.True(select.IsNull(0));
            Assert.Null(select.GetString(0));
            Assert.Equal("blob", select.GetString(3));
            Assert.True(select.GetBytes(2).IsEmpty);
            Assert.Null(select.GetNullableInt64(4));
            Assert.Equal(0.5, select.GetDouble(5));

            Assert.True(select.Read());
            Assert.Equal("", select.GetString(0));
            Assert.Equal("text", select.GetString(1));
            Assert.Equal([1, 2, 3], select.GetBytes(2).ToArray());
            Assert.Equal(long.MinValue, select.GetInt64(4));
            Assert.Equal(long.MinValue, select.GetNullableInt64(4));
            Assert.True(select.IsNull(5));

            Assert.False(select.Read());
        }
        finally
        {
            select.Reset();
        }
    }

    [Fact]
    public void A_failed_step_reports_SQLite_s_error_and_leaves_the_statement_usable()
    {
        using var connection = Open();
        using var insert = new PreparedStatement(connection, "INSERT INTO t (rowid, text) VALUES (1, $text)", ["$text"]);
        insert.Bind(0, "first");
        insert.Execute();

        var error = Assert.Throws<SqliteException>(() => insert.Execute());
        Assert.Equal(19, error.SqliteErrorCode); // SQLITE_CONSTRAINT

        using var delete = new PreparedStatement(connection, "DELETE FROM t", []);
        Assert.Equal(1, delete.Execute());
        Assert.Equal(1, insert.Execute());
    }

    private static SqliteConnection Open()
    {
        var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using var create = connection.CreateCommand();
        create.CommandText = "CREATE TABLE t (text TEXT, blob BLOB, number INTEGER, real REAL)";
        create.ExecuteNonQuery();
        return connection;
    }
}
