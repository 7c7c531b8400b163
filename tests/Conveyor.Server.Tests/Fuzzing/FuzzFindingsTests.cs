using System.Net;
using System.Text;
using System.Text.Json;

namespace Conveyor.Server.Tests.Fuzzing;

/// <summary>What <see cref="ApiFuzzTests"/> found, one test each, so that a fix cannot quietly come undone: each
/// request once answered 500, an error in <c>text/plain</c>, or an answer many times its own size.</summary>
public sealed class FuzzFindingsTests(OpenServerFixture fixture) : IClassFixture<OpenServerFixture>
{
    private TestServer Server => fixture.Server;

    public static TheoryData<string, string> BrokenUnicode => new()
    {
        // Raw bytes that are not UTF-8, in a value and in a field name: the reader throws when it decodes them.
        { "/api/v1/tasks", "{\"task\":\"conveyor.noop\",\"queue\":\"\\xff\"}" },
        { "/api/v1/tasks", "{\"task\":\"conveyor.noop\",\"\\xc0\\xafqueue\":\"fuzz\"}" },
        { "/api/v1/tasks/batch", "{\"tasks\":[{\"task\":\"conveyor.noop\",\"retry\":{\"maxDelay\":\"\\xf4\\x90\\x80\\x80PT1M\"}}]}" },
        { "/api/v1/tasks/purge", "{\"state\":\"\\xe2\\x82dead\"}" },
        { "/api/v1/workflows", "{\"steps\":[{\"id\":\"a\",\"task\":\"conveyor.noop\",\"after\":[\"\\x80a\"]}]}" },
        { "/api/v1/schedules", "{\"name\":\"s\",\"every\":\"PT1H\",\"task\":\"conveyor.noop\",\"queue\":\"\\xe0\\x80\\xaffuzz\"}" },
        // Escapes of half a surrogate pair: valid JSON syntax, but no character.
        { "/api/v1/tasks", """{"task":"conveyor.noop","\udc00\ud800retry":{}}""" },
        { "/api/v1/tasks", """{"task":"conveyor.noop","retry":{"backoff":"\ud800exponential"}}""" },
        { "/api/v1/tasks", """{"task":"conveyor.noop","args":{"text":"\ud800"}}""" },
        { "/api/v1/tasks/retry", """{"state":"dead","\udc00queue":"fuzz"}""" },
        { "/api/v1/schedules", """{"name":"\udc00","every":"PT1H","task":"conveyor.noop"}""" },
        { "/api/v1/workflows", """{"name":"fuzz","\ud800steps":[]}""" },
    };

    [Theory]
    [MemberData(nameof(BrokenUnicode))]
    public async Task A_body_that_is_not_unicode_is_a_400_problem_and_stores_nothing(string path, string latin1Body)
    {
        // Latin-1 keeps each \xNN above as the one byte it names.
        var bytes = Encoding.Latin1.GetBytes(Unescape(latin1Body));
        var before = await Server.CountTasksAsync();
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new("application/json");
        using var response = await Server.Client.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("not valid", text, StringComparison.Ordinal);
        Assert.Equal(before, await Server.CountTasksAsync());
    }

    [Fact]
    public async Task A_paired_surrogate_escape_is_a_character_and_is_stored()
    {
        var id = await Server.EnqueueAsync(JsonDocument.Parse("""{"task":"conveyor.noop","queue":"idle","args":{"text":"\ud83d\ude00"}}""").RootElement);
        var task = await Server.GetTaskAsync(id);
        Assert.Equal("\U0001F600", task.GetProperty("args").GetProperty("text").GetString());
    }

    [Theory]
    [InlineData("GET", "/api/v1/no-such-route", "text/html", 404)]
    [InlineData("GET", "/api/v1/no-such-route", "application/xml", 404)]
    [InlineData("DELETE", "/api/v1/workflows", "text/plain", 405)]
    [InlineData("DELETE", "/api/v1/tasks/0192f0c1-7a3e-7c4d-9b1a-2f4e5d6c7b8a", "image/png", 405)]
    public async Task An_error_without_a_body_is_problem_details_whatever_the_client_accepts(string method, string path, string accept, int status)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        request.Headers.TryAddWithoutValidation("Accept", accept);
        using var response = await Server.Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(text);
        Assert.Equal(status, problem.RootElement.GetProperty("status").GetInt32());
    }

    [Fact]
    public async Task Many_unknown_fields_get_an_answer_of_bounded_size()
    {
        // 20,000 unknown fields once made a 422 listing each one: an answer over 4 MB for a 200 KB request.
        var body = "{\"task\":\"conveyor.noop\"," + string.Join(',', Enumerable.Range(0, 20_000).Select(i => $"\"k{i}\":{i}")) + "}";
        using var response = await Server.PostJsonAsync("/api/v1/tasks", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        Assert.True(text.Length < 20_000, $"{text.Length} characters");
        using var problem = JsonDocument.Parse(text);
        Assert.Equal(50, problem.RootElement.GetProperty("errors").EnumerateObject().Count());
        Assert.Contains("and 19950 more problems", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ffffffffffffffff")]
    [InlineData("zz")]
    [InlineData("-1")]
    public async Task A_chunked_body_with_a_bad_chunk_size_is_a_400_problem(string chunkSize)
    {
        var body = """{"name":"chunked","every":"PT1H","task":"conveyor.noop"}""";
        var head = $"POST /api/v1/schedules HTTP/1.1\r\nHost: 127.0.0.1:{Server.BaseAddress.Port}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        var request = new FuzzRequest("test", "POST", "POST /api/v1/schedules", Encoding.ASCII.GetBytes(head),
            Encoding.ASCII.GetBytes($"{chunkSize}\r\n{body}\r\n0\r\n\r\n"), BodyMode.Whole, ProtocolLevel: true);
        await using var connection = await RawHttpConnection.OpenAsync(new IPEndPoint(IPAddress.Loopback, Server.BaseAddress.Port), CancellationToken.None);
        var response = await connection.SendAsync(request, CancellationToken.None);
        Assert.True(response.Status == 400, $"{response.Status}: {Encoding.UTF8.GetString(response.Body)}");
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"), StringComparison.Ordinal);
        using var schedule = await Server.Client.GetAsync("/api/v1/schedules/chunked");
        Assert.Equal(HttpStatusCode.NotFound, schedule.StatusCode);
    }

    [Theory]
    [InlineData("createdAfter=0001-01-01T00:00:00Z")]
    [InlineData("createdAfter=0001-01-01T00:00:00Z&text=x")]
    [InlineData("createdBefore=9999-12-31T23:59:59Z&createdAfter=0001-01-01T00:00:01Z")]
    public async Task A_search_from_the_first_instant_lists_tasks(string query)
    {
        // createdAfter minus the clock-skew margin once went below DateTimeOffset.MinValue: a 500.
        await Server.EnqueueAsync(new { task = "conveyor.noop", queue = "idle" });
        using var response = await Server.Client.GetAsync("/api/v1/tasks?" + query);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {text}");
    }

    private static string Unescape(string text)
    {
        // \xNN → the character NN (then one Latin-1 byte); other text as it is.
        var result = new StringBuilder();
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 3 < text.Length && text[i + 1] == 'x')
            {
                result.Append((char)Convert.ToInt32(text.Substring(i + 2, 2), 16));
                i += 3;
            }
            else
            {
                result.Append(text[i]);
            }
        }
        return result.ToString();
    }
}
