using System.Globalization;

namespace Conveyor.Encryption;

/// <summary>A 256-bit AES key and the id that tags every value it encrypts.</summary>
public sealed class PayloadKey
{
    /// <summary>Key length in bytes: 32 (AES-256).</summary>
    public const int KeyBytes = 32;

    /// <summary>Longest key id, in characters: 16.</summary>
    public const int MaxIdLength = 16;

    /// <summary>The id given to a key configured without one (<c>CONVEYOR_ENCRYPTION_KEY=&lt;base64&gt;</c>): <c>1</c>.</summary>
    public const string DefaultId = "1";

    private readonly byte[] _key;

    /// <summary>Creates a key.</summary>
    /// <param name="id">1 to 16 letters, digits, <c>-</c> or <c>_</c>; stored in clear with every value.</param>
    /// <param name="key">32 bytes, from a CSPRNG (<c>openssl rand -base64 32</c>).</param>
    /// <exception cref="ArgumentException">The id or the key's length is not accepted (the message never holds the key).</exception>
    public PayloadKey(string id, ReadOnlySpan<byte> key)
    {
        if (!IsValidId(id))
        {
            throw new ArgumentException($"A key id is 1 to {MaxIdLength} letters, digits, '-' or '_'.", nameof(id));
        }
        if (key.Length != KeyBytes)
        {
            throw new ArgumentException($"A key is {KeyBytes} bytes (256 bits), not {key.Length.ToString(CultureInfo.InvariantCulture)}.", nameof(key));
        }
        Id = id;
        _key = key.ToArray();
    }

    /// <summary>The key's id.</summary>
    public string Id { get; }

    internal byte[] Bytes => _key;

    /// <summary>Whether <paramref name="id"/> can name a key.</summary>
    public static bool IsValidId(string? id) =>
        !string.IsNullOrEmpty(id) && id.Length <= MaxIdLength && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    /// <summary>Reads <c>id:base64</c>, or <c>base64</c> alone (id <see cref="DefaultId"/>) unless
    /// <paramref name="idRequired"/>.</summary>
    /// <param name="entry">The text.</param>
    /// <param name="idRequired">Whether the id must be given.</param>
    /// <param name="where">The setting (and line) it came from, named in errors.</param>
    /// <exception cref="FormatException">Not a key: the message names <paramref name="where"/> and what is accepted, never the key.</exception>
    public static PayloadKey Parse(string entry, bool idRequired, string where)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var text = entry.Trim();
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        string id;
        string base64;
        if (colon < 0)
        {
            if (idRequired)
            {
                throw new FormatException($"{where}: a key is 'id:base64' (an id, a colon, then 32 bytes in base64).");
            }
            id = DefaultId;
            base64 = text;
        }
        else
        {
            id = text[..colon].Trim();
            base64 = text[(colon + 1)..].Trim();
        }
        if (!IsValidId(id))
        {
            throw new FormatException($"{where}: a key id is 1 to {MaxIdLength} letters, digits, '-' or '_'.");
        }
        Span<byte> buffer = stackalloc byte[64];
        if (!Convert.TryFromBase64String(base64, buffer, out var written))
        {
            throw new FormatException(base64.Length > 88
                ? $"{where} (key '{id}'): the key is longer than 32 bytes in base64; make one with 'openssl rand -base64 32'."
                : $"{where} (key '{id}'): the key is not base64; make one with 'openssl rand -base64 32'.");
        }
        try
        {
            if (written != KeyBytes)
            {
                throw new FormatException($"{where} (key '{id}'): the key is {written.ToString(CultureInfo.InvariantCulture)} bytes, not {KeyBytes} (256 bits); make one with 'openssl rand -base64 32'.");
            }
            return new PayloadKey(id, buffer[..written]);
        }
        finally
        {
            buffer.Clear();
        }
    }
}

/// <summary>
/// The keys payloads are encrypted with: the first is the current key, which encrypts every new value; the others only
/// decrypt, so that a key can be replaced without downtime (configure the new one first and keep the old one after it
/// until nothing stored is encrypted with it).
/// </summary>
public sealed class PayloadKeyRing
{
    private readonly Dictionary<string, PayloadKey> _byId;

    /// <summary>Creates a ring; the first key is current.</summary>
    /// <exception cref="ArgumentException">No key, or two with one id.</exception>
    public PayloadKeyRing(IEnumerable<PayloadKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        Keys = [.. keys];
        if (Keys.Count == 0)
        {
            throw new ArgumentException("At least one key is needed.", nameof(keys));
        }
        _byId = new Dictionary<string, PayloadKey>(StringComparer.Ordinal);
        foreach (var key in Keys)
        {
            if (!_byId.TryAdd(key.Id, key))
            {
                throw new ArgumentException($"Two keys have the id '{key.Id}'.", nameof(keys));
            }
        }
    }

    /// <summary>Every key, the current one first.</summary>
    public IReadOnlyList<PayloadKey> Keys { get; }

    /// <summary>The key that encrypts new values.</summary>
    public PayloadKey Current => Keys[0];

    /// <summary>The key of <paramref name="id"/>, or null when none has it.</summary>
    public PayloadKey? Find(string id) => _byId.GetValueOrDefault(id);

    /// <summary>Reads a key file: one key a line, <c>id:base64</c>, the current key first; blank lines and lines starting
    /// with <c>#</c> are skipped.</summary>
    /// <param name="lines">The file's lines.</param>
    /// <param name="where">The setting and file, named in errors.</param>
    /// <exception cref="FormatException">A line is not a key, two keys share an id, or there is none; the message names
    /// <paramref name="where"/> and the line, never a key.</exception>
    public static PayloadKeyRing ParseFile(IReadOnlyList<string> lines, string where)
    {
        ArgumentNullException.ThrowIfNull(lines);
        var keys = new List<PayloadKey>();
        var lineOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < lines.Count; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var at = $"{where} line {(i + 1).ToString(CultureInfo.InvariantCulture)}";
            var key = PayloadKey.Parse(line, idRequired: true, at);
            if (lineOf.TryGetValue(key.Id, out var first))
            {
                throw new FormatException($"{at}: the key id '{key.Id}' is already used on line {first.ToString(CultureInfo.InvariantCulture)}; each key needs an id of its own.");
            }
            lineOf[key.Id] = i + 1;
            keys.Add(key);
        }
        if (keys.Count == 0)
        {
            throw new FormatException($"{where}: the file holds no key; write one a line as 'id:base64', the current key first.");
        }
        return new PayloadKeyRing(keys);
    }
}
