using System.Globalization;
using System.Text;
using Conveyor.Backends;

namespace Conveyor.Redis;

/// <summary>
/// The fields of a task that never change after enqueue, as one string (the task hash's <c>m</c> field), so that a
/// fetch reads one field per task instead of a dozen: each field costs Redis's single thread a lookup, a Lua string
/// and a reply element, and costs the client a parse. Each value is written as <c>{length}:{text}</c>, or <c>~</c>
/// for null, so no value needs escaping.
/// </summary>
/// <remarks>Order: task, queue, priority, args, max attempts, retry base ms, retry max ms, jitter, timeout ms,
/// idempotency key, headers (<see cref="StoredHeaders"/>' text form), created (Unix ms). The mutable not-before and expiry are hash fields of their own.</remarks>
internal static class RedisMessageCodec
{
    private const int FieldCount = 12;

    public static string Encode(TaskMessage message)
    {
        var text = new StringBuilder(128 + (message.Args?.Length ?? 0));
        Append(text, message.Task);
        Append(text, message.Queue);
        Append(text, message.Priority.ToString(CultureInfo.InvariantCulture));
        Append(text, message.Args);
        Append(text, message.MaxAttempts.ToString(CultureInfo.InvariantCulture));
        Append(text, ((long)message.Retry.BaseDelay.TotalMilliseconds).ToString(CultureInfo.InvariantCulture));
        Append(text, ((long)message.Retry.MaxDelay.TotalMilliseconds).ToString(CultureInfo.InvariantCulture));
        Append(text, message.Retry.Jitter.ToString("R", CultureInfo.InvariantCulture));
        Append(text, message.Timeout is { } t ? ((long)t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) : null);
        Append(text, message.IdempotencyKey);
        // The retry policy's exception lists go in reserved headers (RetryHeaders): the blob's layout is unchanged.
        Append(text, StoredHeaders.Serialize(RetryHeaders.ToStored(message)));
        Append(text, message.CreatedAt.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture));
        return text.ToString();
    }

    /// <summary>The message back, with the fields kept outside the blob: <paramref name="storedHeaders"/> (the <c>hdr</c>
    /// field, JSON, reserved headers included), when set, replaces the blob's headers (a retry changed them).</summary>
    public static TaskMessage Decode(string? blob, Guid id, DateTimeOffset? notBefore, DateTimeOffset? expiresAt, string? storedHeaders = null)
    {
        var shared = default(SharedFields);
        return Decode(blob, id, notBefore, expiresAt, storedHeaders, ref shared);
    }

    /// <summary><see cref="Decode(string?, Guid, DateTimeOffset?, DateTimeOffset?, string?)"/> for one of several messages
    /// read together (a fetch), which take the fields they have in common with the message before from
    /// <paramref name="shared"/> rather than decoding them again.</summary>
    public static TaskMessage Decode(string? blob, Guid id, DateTimeOffset? notBefore, DateTimeOffset? expiresAt, string? storedHeaders,
        ref SharedFields shared)
    {
        if (blob is null)
        {
            throw new FormatException($"Task {id} has no stored message ('m' field): it was written by an earlier key layout (docs/redis.md, Upgrading).");
        }
        Span<Range> fields = stackalloc Range[FieldCount];
        var nulls = Split(blob, fields);
        var (retry, headers) = RetryHeaders.FromStored(
            shared.Retry(Long(blob, fields[5]), Long(blob, fields[6]), double.Parse(blob.AsSpan()[fields[7]], NumberStyles.Float, CultureInfo.InvariantCulture)),
            storedHeaders is not null ? StoredHeaders.Parse(storedHeaders)
                : (nulls & (1 << 10)) != 0 ? null
                : shared.Headers(blob, fields[10]));
        return new TaskMessage
        {
            Id = id,
            Task = shared.Task(blob, fields[0]),
            Queue = shared.Queue(blob, fields[1]),
            Priority = (int)Long(blob, fields[2]),
            Args = (nulls & (1 << 3)) != 0 ? null : blob[fields[3]],
            MaxAttempts = (int)Long(blob, fields[4]),
            Retry = retry,
            Timeout = (nulls & (1 << 8)) != 0 ? null : TimeSpan.FromMilliseconds(Long(blob, fields[8])),
            IdempotencyKey = (nulls & (1 << 9)) != 0 ? null : blob[fields[9]],
            Headers = headers is { Count: > 0 } ? headers : null,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(Long(blob, fields[11])),
            NotBefore = notBefore,
            ExpiresAt = expiresAt,
        };
    }

    private static long Long(string blob, Range field) =>
        long.Parse(blob.AsSpan()[field], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

    /// <summary>The task and queue names, retry policy and headers of the last message decoded: the messages of one fetch
    /// mostly share them (the tasks of one enqueue carry its trace context), so each is decoded once per run of messages
    /// that repeat it, instead of once per message. None of them is mutable, so messages may share them.</summary>
    internal struct SharedFields
    {
        private string? _task;
        private string? _queue;
        private RetryPolicyReuse _retry;
        // The last headers' text: a range of the blob they were read from.
        private string? _headersBlob;
        private Range _headersRange;
        private IReadOnlyDictionary<string, string>? _headers;

        public string Task(string blob, Range field) => Reuse(blob.AsSpan()[field], ref _task);

        public string Queue(string blob, Range field) => Reuse(blob.AsSpan()[field], ref _queue);

        public RetryPolicy Retry(long baseMs, long maxMs, double jitter) => _retry.Get(baseMs, maxMs, jitter);

        public IReadOnlyDictionary<string, string>? Headers(string blob, Range field)
        {
            var text = blob.AsSpan()[field];
            if (_headersBlob is null || !text.SequenceEqual(_headersBlob.AsSpan()[_headersRange]))
            {
                _headers = StoredHeaders.Parse(text);
                (_headersBlob, _headersRange) = (blob, field);
            }
            return _headers;
        }

        private static string Reuse(ReadOnlySpan<char> text, ref string? last)
        {
            if (last is null || !text.SequenceEqual(last))
            {
                last = new string(text);
            }
            return last;
        }
    }

    /// <summary><paramref name="blob"/> with its arguments replaced by <paramref name="args"/>, every other field kept as
    /// it is (a payload rewrite changes the arguments alone).</summary>
    public static string WithArgs(string blob, string? args)
    {
        ArgumentNullException.ThrowIfNull(blob);
        var fields = new Range[FieldCount];
        var nulls = Split(blob, fields);
        // A field's text ends at its range's end, a null field ('~') one character after its (empty) range.
        int End(int i) => (nulls & (1 << i)) != 0 ? fields[i].Start.Value + 1 : fields[i].End.Value;
        var text = new StringBuilder(blob.Length + (args?.Length ?? 0));
        text.Append(blob, 0, End(ArgsField - 1));
        Append(text, args);
        text.Append(blob, End(ArgsField), blob.Length - End(ArgsField));
        return text.ToString();
    }

    private const int ArgsField = 3;

    private static void Append(StringBuilder text, string? value)
    {
        if (value is null)
        {
            text.Append('~');
            return;
        }
        text.Append(value.Length.ToString(CultureInfo.InvariantCulture)).Append(':').Append(value);
    }

    /// <summary>Fills the range of each field; returns a bit per field that is null.</summary>
    private static int Split(string blob, Span<Range> fields)
    {
        var nulls = 0;
        var at = 0;
        for (var i = 0; i < fields.Length; i++)
        {
            if (at >= blob.Length)
            {
                throw new FormatException("A task's stored message ends early: it was not written by this version of Conveyor.");
            }
            if (blob[at] == '~')
            {
                nulls |= 1 << i;
                fields[i] = at..at;
                at++;
                continue;
            }
            var colon = blob.IndexOf(':', at);
            if (colon < 0)
            {
                throw new FormatException("A task's stored message is malformed: it was not written by this version of Conveyor.");
            }
            if (!int.TryParse(blob.AsSpan(at, colon - at), NumberStyles.None, CultureInfo.InvariantCulture, out var length)
                || length > blob.Length - colon - 1)
            {
                throw new FormatException("A task's stored message is malformed: it was not written by this version of Conveyor.");
            }
            fields[i] = (colon + 1)..(colon + 1 + length);
            at = colon + 1 + length;
        }
        return nulls;
    }
}
