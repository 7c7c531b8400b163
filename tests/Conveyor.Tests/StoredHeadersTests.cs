using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Tests;

public sealed class StoredHeadersTests
{
    [Theory]
    [InlineData("{\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}")]
    // As PostgreSQL's jsonb gives an object back: a space after each colon and comma, names sorted by length.
    [InlineData("{\"a\": \"1\", \"tracestate\": \"k=v\", \"traceparent\": \"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}")]
    [InlineData("{\"caf\\u00e9\":\"cr\\u00e8me \\\"br\\u00fbl\\u00e9e\\\"\",\"x-tenant\":\"\\u65e5\\u672c\"}")]
    [InlineData("{}")]
    public void Parse_reads_what_the_serializer_reads(string json)
    {
        var expected = JsonSerializer.Deserialize<Dictionary<string, string>>(json)!;

        var parsed = StoredHeaders.Parse(json)!;

        Assert.Equal(expected.Count, parsed.Count);
        foreach (var (name, value) in expected)
        {
            Assert.True(parsed.TryGetValue(name, out var read));
            Assert.Equal(value, read);
            Assert.Equal(value, parsed[name]);
            Assert.True(parsed.ContainsKey(name));
        }
        Assert.Equal(expected.OrderBy(e => e.Key, StringComparer.Ordinal), parsed.OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.False(parsed.ContainsKey("missing"));
        Assert.False(parsed.TryGetValue("missing", out _));
        Assert.Throws<KeyNotFoundException>(() => parsed["missing"]);
        // SQLite's column is read as its UTF-8 bytes, Redis's as a slice of the stored record: both read the same.
        Assert.Equal(parsed.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.ParseUtf8(System.Text.Encoding.UTF8.GetBytes(json))!.OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.Equal(parsed.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.Parse(("x|" + json + "|y").AsSpan(2, json.Length))!.OrderBy(e => e.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Parse_of_a_single_header_answers_for_its_name_only_and_enumerates_it_once()
    {
        var parsed = StoredHeaders.Parse("{\"traceparent\":\"v\"}")!;

        Assert.Equal(["traceparent"], parsed.Keys);
        Assert.Equal(["v"], parsed.Values);
        Assert.Equal([new KeyValuePair<string, string>("traceparent", "v")], parsed.ToList());
        // Names are compared as the serializer's dictionary compared them: ordinally.
        Assert.False(parsed.ContainsKey("TraceParent"));
        // The round trip gives the same text.
        Assert.Equal("{\"traceparent\":\"v\"}", StoredHeaders.Serialize(parsed));
    }

    [Fact]
    public void Parse_keeps_the_last_of_a_repeated_name_as_the_serializer_did()
    {
        var parsed = StoredHeaders.Parse("{\"a\":\"1\",\"a\":\"2\"}")!;

        Assert.Equal("2", Assert.Single(parsed).Value);
    }

    [Fact]
    public void Parse_of_nothing_or_of_json_null_is_null_and_serialize_of_none_is_null()
    {
        Assert.Null(StoredHeaders.Parse(null));
        Assert.Null(StoredHeaders.Parse("null"));
        Assert.Null(StoredHeaders.Serialize(null));
        Assert.Null(StoredHeaders.Serialize(new Dictionary<string, string>()));
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("\"text\"")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\":{\"b\":\"c\"}}")]
    [InlineData("{\"a\":\"1\"")]
    [InlineData("")]
    [InlineData("{}x")]
    [InlineData("{\"a\":\"1\"} {}")]
    public void Parse_of_anything_but_an_object_of_strings_throws_as_the_serializer_does(string json)
    {
        Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<Dictionary<string, string>>(json));
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.Parse(json));
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.ParseUtf8(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    [Fact]
    public void ParseUtf8_reads_invalid_utf8_as_the_column_read_as_a_string_did()
    {
        // {"a":"<0xFF>"}: decoded with a replacement character, as Encoding.UTF8.GetString gave it before.
        byte[] utf8 = [.. "{\"a\":\""u8, 0xFF, .. "\"}"u8];

        var parsed = StoredHeaders.ParseUtf8(utf8)!;

        Assert.Equal("\uFFFD", parsed["a"]);
    }

    [Fact]
    public void Parse_refuses_a_null_value_which_no_backend_stores()
    {
        // The serializer would give a header whose value is null, which the headers' type does not allow.
        var error = Assert.ThrowsAny<JsonException>(() => StoredHeaders.Parse("{\"a\":null}"));
        Assert.Contains("'a'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_reads_headers_longer_than_its_stack_buffer()
    {
        var headers = Enumerable.Range(0, 40).ToDictionary(i => $"header-{i}", i => new string('x', i * 10));
        var json = StoredHeaders.Serialize(headers)!;
        Assert.True(json.Length > 512);

        var parsed = StoredHeaders.Parse(json)!;

        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), parsed.OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.ParseUtf8(System.Text.Encoding.UTF8.GetBytes(json))!.OrderBy(e => e.Key, StringComparer.Ordinal));
    }
    private const string TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    [Fact]
    public void A_canonical_traceparent_alone_is_stored_as_its_25_bytes_and_read_back_the_same()
    {
        var headers = new Dictionary<string, string> { ["traceparent"] = TraceParent };

        var binary = StoredHeaders.SerializeBinary(headers)!;
        var text = StoredHeaders.Serialize(headers)!;

        Assert.Equal(26, binary.Length);
        Assert.Equal(0, binary[0]);
        Assert.Equal(Convert.FromHexString("0af7651916cd43dd8448eb211c80319c" + "b7ad6b7169203331" + "01"), binary[1..]);
        Assert.Equal("~CvdlGRbNQ92ESOshHIAxnLeta3FpIDMxAQ", text);
        foreach (var read in new[] { StoredHeaders.ParseUtf8(binary)!, StoredHeaders.Parse(text)!, StoredHeaders.ParseUtf8(System.Text.Encoding.UTF8.GetBytes(text))! })
        {
            Assert.Equal(headers, read);
            Assert.Equal(["traceparent"], read.Keys);
        }
    }

    [Theory]
    [InlineData("tracestate", "congo=t61rcWkgMzE")]
    [InlineData("conveyor-workflow", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]
    public void A_canonical_traceparent_beside_other_headers_is_stored_as_its_bytes_then_the_others_as_json(string name, string value)
    {
        var headers = new Dictionary<string, string> { ["traceparent"] = TraceParent, [name] = value, ["x"] = "caf\u00e9 \"1\"" };

        var binary = StoredHeaders.SerializeBinary(headers)!;
        var text = StoredHeaders.Serialize(headers)!;

        var rest = headers.Where(h => h.Key != "traceparent").ToDictionary();
        Assert.Equal(JsonSerializer.SerializeToUtf8Bytes(rest, ConveyorJson.Options), binary[26..]);
        Assert.Equal(JsonSerializer.Serialize(rest, ConveyorJson.Options), text[35..]);
        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.ParseUtf8(binary)!.OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.Parse(text)!.OrderBy(e => e.Key, StringComparer.Ordinal));
        var read = StoredHeaders.ParseUtf8(binary)!;
        Assert.Equal(3, read.Count);
        Assert.Equal(TraceParent, read["traceparent"]);
        Assert.Equal(value, read[name]);
        Assert.True(read.ContainsKey("traceparent"));
        Assert.True(read.ContainsKey("x"));
        Assert.False(read.ContainsKey("missing"));
        Assert.False(read.TryGetValue("missing", out _));
        Assert.Throws<KeyNotFoundException>(() => read["missing"]);
        Assert.Equal(headers.Keys.Order(StringComparer.Ordinal), read.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(headers.Values.Order(StringComparer.Ordinal), read.Values.Order(StringComparer.Ordinal));
        // A slice of a larger record (Redis's message text) reads the same.
        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.Parse(("a|" + text + "|b").AsSpan(2, text.Length))!.OrderBy(e => e.Key, StringComparer.Ordinal));
    }

    [Theory]
    // Text that 25 bytes would not give back: uppercase hex, another version, a longer or shorter value, no value at all.
    [InlineData("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01")]
    [InlineData("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1")]
    [InlineData("00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01")]
    [InlineData("00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01")]
    [InlineData("v")]
    public void Any_other_traceparent_is_stored_as_json_text_as_before(string traceParent)
    {
        var headers = new Dictionary<string, string> { ["traceparent"] = traceParent, ["a"] = "1" };

        Assert.Null(StoredHeaders.SerializeBinary(headers));
        var text = StoredHeaders.Serialize(headers)!;

        Assert.Equal(JsonSerializer.Serialize(headers, ConveyorJson.Options), text);
        Assert.Equal(headers.OrderBy(e => e.Key, StringComparer.Ordinal), StoredHeaders.Parse(text)!.OrderBy(e => e.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void A_traceparent_under_another_case_in_a_map_that_ignores_case_stays_json_under_its_own_name()
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase) { ["TraceParent"] = TraceParent, ["a"] = "1" };

        Assert.Null(StoredHeaders.SerializeBinary(headers));
        var read = StoredHeaders.Parse(StoredHeaders.Serialize(headers))!;

        Assert.Equal(TraceParent, read["TraceParent"]);
        Assert.False(read.ContainsKey("traceparent"));
    }

    [Fact]
    public void SerializeBinary_of_none_or_of_headers_without_a_traceparent_is_null()
    {
        Assert.Null(StoredHeaders.SerializeBinary(null));
        Assert.Null(StoredHeaders.SerializeBinary(new Dictionary<string, string>()));
        Assert.Null(StoredHeaders.SerializeBinary(new Dictionary<string, string> { ["a"] = "1" }));
    }

    [Theory]
    [InlineData("~")]
    [InlineData("~CvdlGRbNQ92ESOshHIAxnLeta3FpIDMxA")]
    [InlineData("~CvdlGRbNQ92ESOshHIAx!Leta3FpIDMxAQ")]
    [InlineData("~CvdlGRbNQ92ESOshHIAxnLeta3FpIDMxAQ{")]
    [InlineData("~CvdlGRbNQ92ESOshHIAxnLeta3FpIDMxAQ[]")]
    [InlineData("~CvdlGRbNQ92ESOshHIAxnLeta3FpIDMxAQ{\"traceparent\":\"x\"}")]
    public void Parse_of_a_broken_compact_text_throws(string stored)
    {
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.Parse(stored));
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.ParseUtf8(System.Text.Encoding.UTF8.GetBytes(stored)));
    }

    [Fact]
    public void ParseUtf8_of_a_broken_compact_binary_throws()
    {
        var whole = StoredHeaders.SerializeBinary(new Dictionary<string, string> { ["traceparent"] = TraceParent })!;

        Assert.ThrowsAny<JsonException>(() => StoredHeaders.ParseUtf8(whole.AsSpan(0, 25)));
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.ParseUtf8([.. whole, .. "{"u8]));
        Assert.ThrowsAny<JsonException>(() => StoredHeaders.ParseUtf8([.. whole, .. "{\"traceparent\":\"x\"}"u8]));
    }
}
