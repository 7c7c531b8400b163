using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>The writer's prepared statements, both ways they reach SQLite (directly, and through SQLitePCL where the
/// library cannot be reached directly): the direct calls reach the very library SQLitePCL loaded, and every kind of value
/// goes in and comes back out as it was (empty text and blobs stay empty, not NULL; text at and past the stack buffer,
/// outside ASCII or with a NUL character keeps every character), bound by the position in the parameter list given.</summary>
public sealed class PreparedStatementTests
{
    [Fact]
    public void The_direct_calls_reach_the_library_SQLitePCL_uses()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();

        Assert.True(SqliteNative.Available, "the statements fall back to SQLitePCL's calls: e_sqlite3 was not reached directly");
    }

    public static TheoryData<bool, string> Texts()
    {
        var data = new TheoryData<bool, string>();
        foreach (var direct in new[] { true, false })
        {
            foreach (var text in new[]
            {
                "",
                "a",
                "naïve — ½ 🚀",
                "before\0after",
                new string('x', 170),
                new string('€', 170), // 510 UTF-8 bytes: the most the stack buffer takes
                new string('€', 171),
                string.Concat(Enumerable.Repeat("🚀", 85)),
                string.Concat(Enumerable.Repeat("🚀", 86)),
                new string('é', 257), // 514 bytes: past the short binds
                new string('y', 100_000),
            })
            {
                data.Add(direct, text);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void Text_is_bound_and_read_back_as_it_was(bool direct, string text)
    {
        using var connection = Open();
        using var insert = new PreparedStatement(connection, "INSERT INTO t (number, text) VALUES ($number, $text)", ["$text", "$number"], direct);
        insert.Bind(0, text);
        insert.Bind(1, 7L);
        Assert.Equal(1, insert.Execute());

        using var select = new PreparedStatement(connection, "SELECT text, typeof(text), length(CAST(text AS BLOB)), number FROM t", [], direct);
        Assert.True(select.Read());
        try
        {
            Assert.False(select.IsNull(0));
            Assert.Equal(text, select.GetString(0));
            Assert.Equal("text", select.GetString(1));
            Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(text), select.GetInt64(2));
            Assert.Equal(7, select.GetInt64(3));
        }
        finally
        {
            select.Reset();
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Null_empty_and_filled_values_of_every_kind_are_kept_apart(bool direct)
    {
        using var connection = Open();
        // The list's order is not the statement's: each value goes to the parameter it names.
        using var insert = new PreparedStatement(
            connection, "INSERT INTO t (text, blob, number, real) VALUES ($text, $blob, $number, $real)", ["$real", "$number", "$blob", "$text"], direct);
        insert.Bind(3, (string?)null);
        insert.Bind(2, ReadOnlySpan<byte>.Empty);
        insert.Bind(1, (long?)null);
        insert.Bind(0, 0.5);
        insert.Execute();
        insert.Bind(3, "");
        insert.Bind(2, [1, 2, 3]);
        insert.Bind(1, long.MinValue);
        insert.BindNull(0);
        insert.Execute();
        insert.Bind(3, "t");
        insert.Bind(2, Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray());
        insert.Bind(1, 42L);
        insert.Bind(0, -1.25);
        insert.Execute();

        using var select = new PreparedStatement(
            connection, "SELECT text, typeof(text), blob, typeof(blob), number, real FROM t ORDER BY rowid", [], direct);
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

            Assert.True(select.Read());
            Assert.Equal("t", select.GetString(0));
            Assert.Equal(Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray(), select.GetBytes(2).ToArray());
            Assert.Equal(42, select.GetInt32(4));
            Assert.Equal(-1.25, select.GetDouble(5));

            Assert.False(select.Read());
        }
        finally
        {
            select.Reset();
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_failed_step_reports_SQLite_s_error_and_leaves_the_statement_reset(bool direct)
    {
        using var connection = Open();
        using var insert = new PreparedStatement(connection, "INSERT INTO t (rowid, text) VALUES (1, $text)", ["$text"], direct);
        insert.Bind(0, "first");
        insert.Execute();

        var error = Assert.Throws<SqliteException>(() => insert.Execute());
        Assert.Equal(19, error.SqliteErrorCode); // SQLITE_CONSTRAINT

        // A statement not reset after its error refuses a bind (SQLITE_MISUSE): this one takes it.
        insert.Bind(0, "second");
        using var delete = new PreparedStatement(connection, "DELETE FROM t", [], direct);
        Assert.Equal(1, delete.Execute());
        Assert.Equal(1, insert.Execute());
        using var select = new PreparedStatement(connection, "SELECT text FROM t", [], direct);
        Assert.True(select.Read());
        try
        {
            Assert.Equal("second", select.GetString(0));
        }
        finally
        {
            select.Reset();
        }
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
