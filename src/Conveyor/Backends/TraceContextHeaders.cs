using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Conveyor.Backends;

/// <summary>
/// Headers read from <see cref="StoredHeaders"/>' compact form: the <c>traceparent</c> kept as its 25 bytes, its text
/// made only when something asks for it (an API's record, a handler reading its headers). The worker's tracing reads
/// the ids from the bytes (<see cref="TryGetParentContext"/>): an attempt skips the 55-character text and its parse.
/// A backend may hand one instance to several messages that stored the same bytes (SQLite's fetch does, for the tasks
/// of one enqueue read together): the ids' text is then made once for all of them (twice at worst, by threads that race).
/// </summary>
internal sealed class TraceContextHeaders : IReadOnlyDictionary<string, string>
{
    /// <summary>The length of a <c>traceparent</c> in version 00: "00-", 32 hex, "-", 16 hex, "-", 2 hex.</summary>
    internal const int TraceParentLength = 55;

    private readonly ulong _traceHigh;
    private readonly ulong _traceLow;
    private readonly ulong _parent;
    private readonly byte _flags;
    private readonly IReadOnlyDictionary<string, string>? _rest;
    private string? _traceParent;
    // The parent context, made at the first attempt that asks (ActivityTraceId and ActivitySpanId keep hex strings) and
    // shared by the attempts of every message that holds this instance. Behind a reference, so that a thread that reads
    // it while another sets it sees a whole one (threads that race each make an equal one).
    private ParentContext? _parentContext;

    /// <param name="trace">Trace id (16 bytes), parent id (8), flags (1).</param>
    /// <param name="rest">The other headers (none named <c>traceparent</c>), or null.</param>
    public TraceContextHeaders(ReadOnlySpan<byte> trace, IReadOnlyDictionary<string, string>? rest)
    {
        _traceHigh = BinaryPrimitives.ReadUInt64BigEndian(trace);
        _traceLow = BinaryPrimitives.ReadUInt64BigEndian(trace[8..]);
        _parent = BinaryPrimitives.ReadUInt64BigEndian(trace[16..]);
        _flags = trace[24];
        _rest = rest;
    }

    /// <summary>The <c>traceparent</c> header's text (version 00, lowercase hex), made once.</summary>
    public string TraceParent => _traceParent ??= FormatTraceParent();

    /// <summary>The context that the <c>traceparent</c> (and a <c>tracestate</c> among the other headers) describes, as
    /// a remote parent: what <see cref="ActivityContext.TryParse(string, string, bool, out ActivityContext)"/> gives for
    /// the text, false where it refuses it (an id of zeros).</summary>
    public bool TryGetParentContext(out ActivityContext context)
    {
        if ((_traceHigh | _traceLow) == 0 || _parent == 0)
        {
            context = default;
            return false;
        }
        context = (_parentContext ??= new ParentContext(MakeParentContext())).Context;
        return true;
    }

    private ActivityContext MakeParentContext()
    {
        Span<byte> bytes = stackalloc byte[24];
        WriteIds(bytes);
        string? traceState = null;
        _rest?.TryGetValue(ConveyorDiagnostics.TraceStateHeader, out traceState);
        return new ActivityContext(
            ActivityTraceId.CreateFromBytes(bytes[..16]), ActivitySpanId.CreateFromBytes(bytes[16..]), (ActivityTraceFlags)_flags, traceState, isRemote: true);
    }

    private sealed class ParentContext(ActivityContext context)
    {
        public ActivityContext Context { get; } = context;
    }

    public string this[string key] => TryGetValue(key, out var value) ? value : throw new KeyNotFoundException($"No header '{key}'.");

    public IEnumerable<string> Keys => this.Select(h => h.Key);

    public IEnumerable<string> Values => this.Select(h => h.Value);

    public int Count => 1 + (_rest?.Count ?? 0);

    public bool ContainsKey(string key) => IsTraceParent(key) || (_rest?.ContainsKey(key) ?? false);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out string value)
    {
        if (IsTraceParent(key))
        {
            value = TraceParent;
            return true;
        }
        value = null;
        return _rest?.TryGetValue(key, out value) ?? false;
    }

    // The other headers, then traceparent: the order in which an enqueue adds the context to a message's own headers
    // (TraceContext.Inject). The stored form keeps no order between the two.
    public IEnumerator<KeyValuePair<string, string>> GetEnumerator()
    {
        if (_rest is not null)
        {
            foreach (var header in _rest)
            {
                yield return header;
            }
        }
        yield return new KeyValuePair<string, string>(ConveyorDiagnostics.TraceParentHeader, TraceParent);
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    private static bool IsTraceParent(string key) => string.Equals(key, ConveyorDiagnostics.TraceParentHeader, StringComparison.Ordinal);

    private void WriteIds(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt64BigEndian(bytes, _traceHigh);
        BinaryPrimitives.WriteUInt64BigEndian(bytes[8..], _traceLow);
        BinaryPrimitives.WriteUInt64BigEndian(bytes[16..], _parent);
    }

    private string FormatTraceParent()
    {
        Span<byte> bytes = stackalloc byte[25];
        WriteIds(bytes);
        bytes[24] = _flags;
        Span<char> text = stackalloc char[TraceParentLength];
        "00-".CopyTo(text);
        Convert.TryToHexStringLower(bytes[..16], text.Slice(3, 32), out _);
        text[35] = '-';
        Convert.TryToHexStringLower(bytes.Slice(16, 8), text.Slice(36, 16), out _);
        text[52] = '-';
        Convert.TryToHexStringLower(bytes[24..], text.Slice(53, 2), out _);
        return new string(text);
    }
}
