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

    [Fact]
    public async Task Rows_of_one_fetch_with_the_same_stored_headers_share_them_and_others_get_their_own()
    {
        const string otherTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        static TaskMessage With(TaskMessage message, params (string Name, string Value)[] headers) =>
            message with { Headers = headers.Length == 0 ? null : headers.ToDictionary(h => h.Name, h => h.Value) };
        TaskMessage[] messages =
        [
            With(NewMessage(), ("traceparent", CanonicalTraceParent)),
            With(NewMessage(), ("traceparent", CanonicalTraceParent)),
            With(NewMessage(), ("traceparent", otherTraceParent)),
            With(NewMessage()),
            With(NewMessage(), ("traceparent", CanonicalTraceParent)),
            With(NewMessage(), ("traceparent", CanonicalTraceParent), ("a", "1")),
            With(NewMessage(), ("a", "1")),
            With(NewMessage(), ("a", "1")),
            With(NewMessage(), ("a", "2")),
            With(NewMessage()),
            With(NewMessage(), ("a", "2")),
        ];
        await Queue.EnqueueAsync(messages, Timeout);

        var leases = await FetchAsync(messages.Length);

        Assert.Equal(messages.Select(m => m.Id), leases.Select(l => l.Message.Id));
        for (var i = 0; i < messages.Length; i++)
        {
            AssertSameHeaders(messages[i].Headers, leases[i].Message.Headers);
        }
        var headers = leases.Select(l => l.Message.Headers).ToArray();
        Assert.Same(headers[0], headers[1]);
        Assert.Same(headers[6], headers[7]);
        Assert.NotSame(headers[1], headers[2]);
        Assert.NotSame(headers[4], headers[5]);
        Assert.NotSame(headers[7], headers[8]);
        // A row without headers between two that store the same ones: they still share them.
        Assert.Null(headers[9]);
        Assert.Same(headers[8], headers[10]);
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
