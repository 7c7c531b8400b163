using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// Reads enqueue bodies into <see cref="TaskRequest"/>s, naming every problem's field. Bodies are read by hand
/// rather than bound to a type, so that a value of the wrong type is reported as that field's problem (422) rather
/// than as a body that failed to bind, and unknown fields are caught (a misspelt <c>dealy</c> is an error, not ignored).
/// </summary>
internal sealed class EnqueueRequestReader(TaskRegistry registry, IEnumerable<IEnqueueValidator> validators, TimeProvider time)
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    /// <summary>Parses the body as a JSON object; on failure returns a 400 saying where it broke.</summary>
    public static ProblemHttpResult? TryParse(ReadOnlyMemory<byte> body, out JsonDocument? document)
    {
        document = null;
        if (body.IsEmpty)
        {
            return ApiProblems.Status(StatusCodes.Status400BadRequest, "The request is malformed.",
                "The body is empty; send a JSON object such as {\"task\": \"conveyor.noop\"}.");
        }
        // The reader checks UTF-8 only when a string is decoded, so a body with invalid bytes would parse and then throw
        // wherever a handler reads a name or a value (a 500), or be stored and break every later read of the task.
        if (InvalidUtf8At(body.Span) is { } invalidAt)
        {
            return ApiProblems.Status(StatusCodes.Status400BadRequest, "The request body is not valid JSON.",
                $"The body is not valid UTF-8 (JSON text must be): at byte {invalidAt + 1}.",
                new Dictionary<string, object?> { ["bytePosition"] = invalidAt + 1 });
        }
        try
        {
            document = JsonDocument.Parse(body, DocumentOptions);
        }
        catch (JsonException ex)
        {
            var line = (ex.LineNumber ?? 0) + 1;
            var position = (ex.BytePositionInLine ?? 0) + 1;
            // The reader's message ends with its own 0-based "LineNumber: … | BytePositionInLine: …"; say it 1-based instead.
            var reason = ex.Message;
            var cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0)
            {
                reason = reason[..cut];
            }
            return ApiProblems.Status(StatusCodes.Status400BadRequest, "The request body is not valid JSON.",
                $"The body is not valid JSON: at line {line}, byte {position}: {reason}",
                new Dictionary<string, object?> { ["line"] = line, ["bytePosition"] = position });
        }
        if (MayHoldSurrogateEscape(body.Span) && UnpairedSurrogate(document.RootElement, "") is { } field)
        {
            document.Dispose();
            document = null;
            return ApiProblems.Status(StatusCodes.Status400BadRequest, "The request body is not valid JSON.",
                $"The body is not valid JSON: {field} holds a \\u escape of half a surrogate pair, which is no character.",
                new Dictionary<string, object?> { ["field"] = field });
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            document = null;
            return ApiProblems.Status(StatusCodes.Status400BadRequest, "The request is malformed.",
                "The body must be a JSON object, such as {\"task\": \"conveyor.noop\"}.");
        }
        return null;
    }

    /// <summary>The offset of the first byte that is not part of well-formed UTF-8, or null when all are.</summary>
    internal static int? InvalidUtf8At(ReadOnlySpan<byte> body)
    {
        if (System.Text.Unicode.Utf8.IsValid(body))
        {
            return null;
        }
        var offset = 0;
        while (offset < body.Length)
        {
            if (System.Text.Rune.DecodeFromUtf8(body[offset..], out _, out var consumed) != System.Buffers.OperationStatus.Done)
            {
                return offset;
            }
            offset += consumed;
        }
        return null;
    }

    /// <summary>Whether the body has a <c>\uD800</c>-<c>\uDFFF</c> escape at all: only then is the document walked.</summary>
    private static bool MayHoldSurrogateEscape(ReadOnlySpan<byte> body)
    {
        while (body.IndexOf("\\u"u8) is var at and >= 0)
        {
            body = body[(at + 2)..];
            if (body.Length >= 2 && (body[0] | 0x20) == 'd' && body[1] is (byte)'8' or (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F')
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The path of the first name or string that decodes to an unpaired surrogate, or null.</summary>
    private static string? UnpairedSurrogate(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return Decodes(element) ? null : (path.Length == 0 ? "$" : path);
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return (path.Length == 0 ? "" : path + ".") + "(a field name)";
                    }
                    if (UnpairedSurrogate(property.Value, path.Length == 0 ? name : path + "." + name) is { } found)
                    {
                        return found;
                    }
                }
                return null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (UnpairedSurrogate(item, $"{path}[{index++}]") is { } found)
                    {
                        return found;
                    }
                }
                return null;
            default:
                return null;
        }

        static bool Decodes(JsonElement value)
        {
            try
            {
                _ = value.GetString();
                return true;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }
    }

    /// <summary>Reads one task; adds its problems to <paramref name="errors"/> with <paramref name="prefix"/> in
    /// front of field names. Returns null when the element is not an object.</summary>
    public TaskRequest? ReadTask(JsonElement element, string prefix, List<FieldError> errors)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new(prefix.Length == 0 ? "$" : prefix.TrimEnd('.'), "must be a JSON object with at least a \"task\""));
            return null;
        }
        var before = errors.Count;
        string? task = null;
        string? args = null;
        string? queue = null;
        int? priority = null;
        TimeSpan? delay = null;
        DateTimeOffset? eta = null;
        DateTimeOffset? expiresAt = null;
        int? maxAttempts = null;
        TimeSpan? timeout = null;
        string? idempotencyKey = null;
        string? uniqueKey = null;
        TimeSpan? uniqueFor = null;
        Dictionary<string, string>? headers = null;
        JsonElement? retryElement = null;
        foreach (var property in element.EnumerateObject())
        {
            var value = property.Value;
            var field = prefix + property.Name;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            switch (property.Name)
            {
                case "task":
                    task = ReadString(value, field, errors);
                    break;
                case "args":
                    args = value.GetRawText();
                    break;
                case "queue":
                    queue = ReadString(value, field, errors);
                    break;
                case "priority":
                    priority = ReadInt(value, field, errors);
                    break;
                case "delay":
                    delay = ReadDuration(value, field, errors);
                    break;
                case "eta":
                    eta = ReadTime(value, field, errors);
                    break;
                case "expiresAt":
                    expiresAt = ReadTime(value, field, errors);
                    break;
                case "maxAttempts":
                    maxAttempts = ReadInt(value, field, errors);
                    break;
                case "timeout":
                    timeout = ReadDuration(value, field, errors);
                    break;
                case "idempotencyKey":
                    idempotencyKey = ReadString(value, field, errors);
                    break;
                case "uniqueKey":
                    uniqueKey = ReadString(value, field, errors);
                    break;
                case "uniqueFor":
                    uniqueFor = ReadDuration(value, field, errors);
                    break;
                case "headers":
                    headers = ReadHeaders(value, field, errors);
                    break;
                case "retry":
                    retryElement = value;
                    break;
                default:
                    errors.Add(new(field, "is not a field of a task; known fields: task, args, queue, priority, delay, eta, expiresAt, maxAttempts, timeout, idempotencyKey, uniqueKey, uniqueFor, headers, retry"));
                    break;
            }
        }
        // Read once the task's name is known: fields the retry object leaves out keep the task's own policy.
        var retry = retryElement is { } retryValue
            ? RetryRequestReader.Read(retryValue, prefix + "retry", TaskPolicy(task), errors)
            : null;
        if (expiresAt is { } expiry && expiry <= time.GetUtcNow())
        {
            errors.Add(new(prefix + "expiresAt", "is in the past: the task would expire before it could run"));
        }
        var request = new TaskRequest(task ?? "", args, new EnqueueOptions
        {
            Queue = queue,
            Priority = priority,
            Delay = delay,
            Eta = eta,
            ExpiresAt = expiresAt,
            MaxAttempts = maxAttempts,
            Retry = retry,
            Timeout = timeout,
            IdempotencyKey = idempotencyKey,
            UniqueKey = uniqueKey,
            UniqueFor = uniqueFor,
            Headers = headers,
        });
        // The rules run even when a field failed to read, so one answer lists every problem; a field already
        // reported (read as null) is not reported again as missing.
        var rules = new List<FieldError>();
        EnqueueValidation.Validate(request, registry, validators, requireRegistered: true, prefix, rules);
        var reported = errors.Skip(before).Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
        errors.AddRange(rules.Where(e => !reported.Contains(e.Field)));
        return request;
    }

    /// <summary>The retry policy of <paramref name="task"/> as this process registered it; the default for a task it
    /// does not register (one a remote worker declares).</summary>
    private RetryPolicy TaskPolicy(string? task) =>
        task is not null && registry.TryGet(task, out var descriptor) ? descriptor.Defaults.Retry : RetryPolicy.Default;

    internal static string? ReadString(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }
        errors.Add(new(field, $"must be a string, not {Describe(value)}"));
        return null;
    }

    internal static int? ReadInt(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number))
        {
            return number;
        }
        errors.Add(new(field, value.ValueKind == JsonValueKind.Number
            ? $"must be a whole number in range, not {value.GetRawText()}"
            : $"must be a whole number, not {Describe(value)}"));
        return null;
    }

    internal static TimeSpan? ReadDuration(JsonElement value, string field, List<FieldError> errors)
    {
        var problem = ApiValues.TryReadDuration(value, out var duration);
        if (problem is null)
        {
            return duration;
        }
        errors.Add(new(field, problem));
        return null;
    }

    private static DateTimeOffset? ReadTime(JsonElement value, string field, List<FieldError> errors)
    {
        var problem = ApiValues.TryReadTime(value, out var time);
        if (problem is null)
        {
            return time;
        }
        errors.Add(new(field, problem));
        return null;
    }

    private static Dictionary<string, string>? ReadHeaders(JsonElement value, string field, List<FieldError> errors)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            errors.Add(new(field, $"must be an object of string values, not {Describe(value)}"));
            return null;
        }
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var header in value.EnumerateObject())
        {
            if (header.Value.ValueKind == JsonValueKind.String)
            {
                headers[header.Name] = header.Value.GetString()!;
            }
            else
            {
                errors.Add(new($"{field}.{header.Name}", $"must be a string, not {Describe(header.Value)}"));
            }
        }
        return headers;
    }

    internal static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
