using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;

namespace Conveyor.Backends;

/// <summary>
/// A message's headers as the backends store them. Under tracing nearly every task carries one header, its
/// <c>traceparent</c> (55 characters, 73 bytes as JSON), and a store rewrites a task's row at each state change: its
/// size is the drain's cost on SQLite (docs/benchmarks.md, "The trace context's bytes"). So a <c>traceparent</c> in W3C
/// version <c>00</c>'s canonical form (lowercase hex) is stored as its 25 bytes — trace id, parent id, flags — and the
/// other headers, if any, as a JSON object of strings after them:
/// <list type="bullet">
/// <item>binary, where the engine stores bytes in the column (SQLite, <see cref="SerializeBinary"/>): the byte 0, the 25
/// bytes, then the UTF-8 JSON of the rest (26 bytes for the trace context alone);</item>
/// <item>text (PostgreSQL's <c>text</c>, Redis's message text, <see cref="Serialize"/>): <c>~</c>, the 25 bytes in
/// unpadded base64url (34 characters), then the JSON of the rest (35 characters alone).</item>
/// </list>
/// Any other headers are a plain JSON object of strings, as every row written before this form; the readers take all
/// three. A worker reads one of these for every task it fetches: read without the serializer's generic path, into a
/// map of one entry when there is one header (the name <c>traceparent</c> not allocated again).
/// </summary>
public static class StoredHeaders
{
    // Past this, the UTF-8 copy of the text is rented rather than taken from the stack.
    private const int StackLimit = 512;

    // The trace context's bytes: trace id (16), parent id (8), flags (1).
    private const int TraceBytes = 25;
    private const int TraceParentLength = TraceContextHeaders.TraceParentLength;
    // The binary form's first byte (W3C's version 00): no JSON text starts with it.
    private const byte BinaryMark = 0;
    // The text form's first character: no JSON text starts with it.
    private const char TextMark = '~';
    private const int Base64UrlTraceLength = 34;
    private const int TextTraceLength = 1 + Base64UrlTraceLength;
    private static readonly SearchValues<char> LowerHex = SearchValues.Create("0123456789abcdef");

    /// <summary>The text to store for <paramref name="headers"/>: null when there are none; the compact text form when
    /// they carry a canonical <c>traceparent</c>, else a JSON object of strings.</summary>
    public static string? Serialize(IReadOnlyDictionary<string, string>? headers)
    {
        if (headers is null || headers.Count == 0)
        {
            return null;
        }
        Span<byte> trace = stackalloc byte[TraceBytes];
        if (!TryReadTraceParent(headers, trace))
        {
            return Json(headers);
        }
        var rest = headers.Count == 1 ? null : Json(WithoutTraceParent(headers));
        var text = new StringBuilder(TextTraceLength + (rest?.Length ?? 0)).Append(TextMark);
        Span<char> encoded = stackalloc char[Base64UrlTraceLength];
        Base64Url.EncodeToChars(trace, encoded);
        return text.Append(encoded).Append(rest).ToString();
    }

    /// <summary>The bytes to store for <paramref name="headers"/> in a column that holds bytes: the compact binary form
    /// when they carry a canonical <c>traceparent</c>; otherwise null, and the caller stores <see cref="Serialize"/>'s
    /// text (or nothing, for no headers).</summary>
    public static byte[]? SerializeBinary(IReadOnlyDictionary<string, string>? headers)
    {
        if (headers is null || headers.Count == 0)
        {
            return null;
        }
        Span<byte> trace = stackalloc byte[TraceBytes];
        if (!TryReadTraceParent(headers, trace))
        {
            return null;
        }
        var rest = headers.Count == 1 ? [] : JsonSerializer.SerializeToUtf8Bytes(WithoutTraceParent(headers), ConveyorJson.Options);
        var stored = new byte[1 + TraceBytes + rest.Length];
        stored[0] = BinaryMark;
        trace.CopyTo(stored.AsSpan(1));
        rest.CopyTo(stored.AsSpan(1 + TraceBytes));
        return stored;
    }

    /// <summary>The headers stored as <paramref name="stored"/> (null for none, or for the JSON <c>null</c>): the compact
    /// text form or a JSON object of strings. Throws <see cref="JsonException"/> when it is neither, or when the JSON is
    /// not an object whose values are all strings, as the serializer did.</summary>
    public static IReadOnlyDictionary<string, string>? Parse(string? stored) => stored is null ? null : Parse(stored.AsSpan());

    /// <summary>The headers stored as the text <paramref name="stored"/> (a slice of a larger record, read without a copy of
    /// its own), as <see cref="Parse(string?)"/> reads them.</summary>
    public static IReadOnlyDictionary<string, string>? Parse(ReadOnlySpan<char> stored)
    {
        if (stored.Length > 0 && stored[0] == TextMark)
        {
            Span<byte> trace = stackalloc byte[TraceBytes];
            if (stored.Length < TextTraceLength
                || Base64Url.DecodeFromChars(stored.Slice(1, Base64UrlTraceLength), trace, out _, out var written) != OperationStatus.Done
                || written != TraceBytes)
            {
                throw new JsonException("Stored headers begin with '~' but not with a trace context in base64url.");
            }
            return WithTraceParent(trace, stored.Length == TextTraceLength ? null : ParseJson(stored[TextTraceLength..]));
        }
        return ParseJson(stored);
    }

    /// <summary>The headers stored as <paramref name="utf8"/>, read where the engine hands out its bytes (SQLite's
    /// column) without decoding them into a string first: the compact binary form, the compact text form, or the UTF-8
    /// text of a JSON object, as <see cref="Parse(string?)"/> reads them.</summary>
    public static IReadOnlyDictionary<string, string>? ParseUtf8(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > 0 && utf8[0] == BinaryMark)
        {
            if (utf8.Length < 1 + TraceBytes)
            {
                throw new JsonException($"Stored headers begin with a trace context of {utf8.Length - 1} bytes, not {TraceBytes}.");
            }
            var rest = utf8[(1 + TraceBytes)..];
            return WithTraceParent(utf8.Slice(1, TraceBytes), rest.IsEmpty ? null : ParseJsonUtf8(rest));
        }
        if (utf8.Length > 0 && utf8[0] == (byte)TextMark)
        {
            // ASCII up to the JSON of the rest: the text form's reader takes it from the UTF-16 copy.
            return Parse(Encoding.UTF8.GetString(utf8));
        }
        return ParseJsonUtf8(utf8);
    }

    private static string Json(IReadOnlyDictionary<string, string> headers) => JsonSerializer.Serialize(headers, ConveyorJson.Options);

    private static Dictionary<string, string> WithoutTraceParent(IReadOnlyDictionary<string, string> headers)
    {
        var rest = new Dictionary<string, string>(headers.Count - 1, StringComparer.Ordinal);
        foreach (var (name, value) in headers)
        {
            if (!string.Equals(name, ConveyorDiagnostics.TraceParentHeader, StringComparison.Ordinal))
            {
                rest[name] = value;
            }
        }
        return rest;
    }

    // The traceparent's 25 bytes when it is in version 00's canonical form, the only one whose text comes back the same
    // from them: "00-", lowercase hex of the trace id, "-", of the parent id, "-", of the flags.
    private static bool TryReadTraceParent(IReadOnlyDictionary<string, string> headers, Span<byte> trace)
    {
        if (ExactTraceParent(headers) is not { Length: TraceParentLength } value)
        {
            return false;
        }
        var text = value.AsSpan();
        if (!text.StartsWith("00-", StringComparison.Ordinal) || text[35] != '-' || text[52] != '-'
            || text.Slice(3, 32).ContainsAnyExcept(LowerHex) || text.Slice(36, 16).ContainsAnyExcept(LowerHex)
            || text.Slice(53, 2).ContainsAnyExcept(LowerHex))
        {
            return false;
        }
        Convert.FromHexString(text.Slice(3, 32), trace[..16], out _, out _);
        Convert.FromHexString(text.Slice(36, 16), trace.Slice(16, 8), out _, out _);
        Convert.FromHexString(text.Slice(53, 2), trace[24..], out _, out _);
        return true;
    }

    // The value under the name "traceparent" exactly: a map that compares names ignoring case would answer for
    // "TraceParent" too, which the stored form would then give back under another name.
    private static string? ExactTraceParent(IReadOnlyDictionary<string, string> headers)
    {
        if (headers is Dictionary<string, string> { Comparer: var comparer } dictionary && ReferenceEquals(comparer, StringComparer.Ordinal))
        {
            return dictionary.GetValueOrDefault(ConveyorDiagnostics.TraceParentHeader);
        }
        if (headers is TraceContextHeaders stored)
        {
            return stored.TraceParent;
        }
        foreach (var (name, value) in headers)
        {
            if (string.Equals(name, ConveyorDiagnostics.TraceParentHeader, StringComparison.Ordinal))
            {
                return value;
            }
        }
        return null;
    }

    private static TraceContextHeaders WithTraceParent(ReadOnlySpan<byte> trace, IReadOnlyDictionary<string, string>? rest)
    {
        if (rest is { Count: 0 })
        {
            rest = null;
        }
        if (rest is not null && rest.ContainsKey(ConveyorDiagnostics.TraceParentHeader))
        {
            throw new JsonException("Stored headers carry a traceparent twice: in the trace context and in the JSON after it.");
        }
        return new TraceContextHeaders(trace, rest);
    }

    private static IReadOnlyDictionary<string, string>? ParseJson(ReadOnlySpan<char> json)
    {
        var maxBytes = Encoding.UTF8.GetMaxByteCount(json.Length);
        byte[]? rented = null;
        var buffer = maxBytes <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            var length = Encoding.UTF8.GetBytes(json, buffer);
            return ParseJsonUtf8(buffer[..length]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static IReadOnlyDictionary<string, string>? ParseJsonUtf8(ReadOnlySpan<byte> utf8)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8))
        {
            // The JSON reader refuses invalid UTF-8 with an InvalidOperationException; decoded with replacement characters
            // (as reading the column as a string did), the text gets the same answer as before.
            return ParseJson(Encoding.UTF8.GetString(utf8));
        }
        // An empty or malformed text makes the reader itself throw a JsonException.
        var reader = new Utf8JsonReader(utf8);
        reader.Read();
        if (reader.TokenType == JsonTokenType.Null)
        {
            return null;
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException($"Stored headers are a JSON {reader.TokenType}, not an object of strings.");
        }
        string? firstName = null;
        string? firstValue = null;
        Dictionary<string, string>? many = null;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.ValueTextEquals("traceparent"u8) ? ConveyorDiagnostics.TraceParentHeader : reader.GetString()!;
            if (!reader.Read() || reader.TokenType != JsonTokenType.String)
            {
                throw new JsonException($"Stored header '{name}' is a JSON {reader.TokenType}, not a string.");
            }
            var value = reader.GetString()!;
            if (firstName is null && many is null)
            {
                (firstName, firstValue) = (name, value);
                continue;
            }
            if (many is null)
            {
                many = new Dictionary<string, string>(StringComparer.Ordinal) { [firstName!] = firstValue! };
            }
            // The serializer kept the last of repeated names; so does this.
            many[name] = value;
        }
        if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
        {
            throw new JsonException("Stored headers are not one JSON object of strings.");
        }
        if (many is not null)
        {
            return many;
        }
        return firstName is null ? new Dictionary<string, string>(0, StringComparer.Ordinal) : new OneHeader(firstName, firstValue!);
    }

    /// <summary>Headers of a single entry: a read-only map in one small object.</summary>
    private sealed class OneHeader(string name, string value) : IReadOnlyDictionary<string, string>
    {
        public string this[string key] => TryGetValue(key, out var found) ? found : throw new KeyNotFoundException($"No header '{key}'.");

        public IEnumerable<string> Keys => [name];

        public IEnumerable<string> Values => [value];

        public int Count => 1;

        public bool ContainsKey(string key) => string.Equals(key, name, StringComparison.Ordinal);

        public bool TryGetValue(string key, [MaybeNullWhen(false)] out string found)
        {
            var match = string.Equals(key, name, StringComparison.Ordinal);
            found = match ? value : null;
            return match;
        }

        public IEnumerator<KeyValuePair<string, string>> GetEnumerator()
        {
            yield return new KeyValuePair<string, string>(name, value);
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
