using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;

namespace Conveyor.Backends;

/// <summary>
/// A message's headers as the backends store them: a JSON object of strings. A worker reads one such object for every
/// task it fetches, and under tracing nearly every task carries one header, its <c>traceparent</c>: read here with a
/// <see cref="Utf8JsonReader"/> into a map of one entry (the header's name not allocated again), where the
/// serializer's generic path built a dictionary of three slots and a copy of the name each time.
/// </summary>
public static class StoredHeaders
{
    // Past this, the UTF-8 copy of the text is rented rather than taken from the stack.
    private const int StackLimit = 512;

    /// <summary>The text to store for <paramref name="headers"/>: null when there are none.</summary>
    public static string? Serialize(IReadOnlyDictionary<string, string>? headers) =>
        headers is null || headers.Count == 0 ? null : JsonSerializer.Serialize(headers, ConveyorJson.Options);

    /// <summary>The headers stored as <paramref name="json"/> (null for none, or for the JSON <c>null</c>). Throws
    /// <see cref="JsonException"/> when the text is not an object whose values are all strings, as the serializer
    /// did.</summary>
    public static IReadOnlyDictionary<string, string>? Parse(string? json) => json is null ? null : Parse(json.AsSpan());

    /// <summary>The headers stored as the text <paramref name="json"/> (a slice of a larger record, read without a copy of
    /// its own), as <see cref="Parse(string?)"/> reads them.</summary>
    public static IReadOnlyDictionary<string, string>? Parse(ReadOnlySpan<char> json)
    {
        var maxBytes = Encoding.UTF8.GetMaxByteCount(json.Length);
        byte[]? rented = null;
        var buffer = maxBytes <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            var length = Encoding.UTF8.GetBytes(json, buffer);
            return ParseUtf8(buffer[..length]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>The headers stored as the UTF-8 text <paramref name="utf8"/>, read where the engine hands out its bytes
    /// (SQLite's column) without decoding them into a string first, as <see cref="Parse(string?)"/> reads them.</summary>
    public static IReadOnlyDictionary<string, string>? ParseUtf8(ReadOnlySpan<byte> utf8)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8))
        {
            // The JSON reader refuses invalid UTF-8 with an InvalidOperationException; decoded with replacement characters
            // (as reading the column as a string did), the text gets the same answer as before.
            return Parse(Encoding.UTF8.GetString(utf8));
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
