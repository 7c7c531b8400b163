using Conveyor.Conformance;
using Microsoft.Data.Sqlite;

namespace Conveyor.Sqlite.Tests;

/// <summary>How the <c>headers</c> column holds what it stores: a trace context as its bytes (a row rewritten at each
/// state change pays for every byte of it), anything else as JSON text, as rows written before the compact form.</summary>
public sealed class SqliteStoredHeadersTests() : ConformanceTest(new SqliteTestBackend())
{
    [Fact]
    public async Task A_trace_context_is_stored_as_26_bytes_and_other_headers_as_json_text()
    {
        var traced = NewMessage() with { Headers = new Dictionary<string, string> { ["traceparent"] = CanonicalTraceParent } };
        var both = NewMessage() with { Headers = new Dictionary<string, string> { ["traceparent"] = CanonicalTraceParent, ["a"] = "1" } };
        var plain = NewMessage() with { Headers = new Dictionary<string, string> { ["a"] = "1" } };
        await Queue.EnqueueAsync([traced, both, plain], Timeout);

        Assert.Equal(("blob", 26L), await StoredAsync(traced.Id));
        Assert.Equal(("blob", 26L + """{"a":"1"}""".Length), await StoredAsync(both.Id));
        Assert.Equal(("text", (long)"""{"a":"1"}""".Length), await StoredAsync(plain.Id));
        AssertSameHeaders(traced.Headers, (await GetAsync(traced.Id)).Headers);
        AssertSameHeaders(both.Headers, (await GetAsync(both.Id)).Headers);
        AssertSameHeaders(plain.Headers, (await GetAsync(plain.Id)).Headers);
    }

    [Fact]
    public async Task A_row_written_before_the_compact_form_is_read_as_it_was()
    {
        var message = NewMessage() with { Headers = new Dictionary<string, string> { ["traceparent"] = CanonicalTraceParent } };
        await EnqueueAsync(message);
        await using (var connection = Open())
        {
            await using var update = connection.CreateCommand();
            update.CommandText = "UPDATE tasks SET headers = $json";
            update.Parameters.AddWithValue("$json", $$"""{"traceparent":"{{CanonicalTraceParent}}"}""");
            Assert.Equal(1, await update.ExecuteNonQueryAsync(Timeout));
        }

        Assert.Equal(message.Headers, (await GetAsync(message.Id)).Headers);
        Assert.Equal(message.Headers, (await FetchOneAsync()).Message.Headers);
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection($"Data Source={((SqliteBackend)Backend).DatabasePath};Pooling=False");
        connection.Open();
        return connection;
    }

    private async Task<(string Type, long Length)> StoredAsync(Guid id)
    {
        await using var connection = Open();
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT typeof(headers), length(CAST(headers AS BLOB)) FROM tasks WHERE id = $id";
        select.Parameters.AddWithValue("$id", id.ToByteArray(bigEndian: true));
        await using var reader = await select.ExecuteReaderAsync(Timeout);
        Assert.True(await reader.ReadAsync(Timeout));
        return (reader.GetString(0), reader.GetInt64(1));
    }
}
