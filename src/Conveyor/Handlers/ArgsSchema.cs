using System.Text.Json;
using System.Text.Json.Schema;
using System.Text.RegularExpressions;

namespace Conveyor;

/// <summary>
/// The JSON schema of a task's arguments, generated from its handler's arguments type by System.Text.Json
/// (<see cref="JsonSchemaExporter"/>, with Conveyor's JSON settings), which a worker announces in its heartbeat so that a
/// server without the handler checks arguments before it stores a task (docs/http-api.md). The check is the subset of
/// JSON Schema that the exporter writes and that decides whether the worker can read the arguments: <c>type</c>,
/// <c>properties</c>, <c>required</c>, <c>items</c>, <c>additionalProperties</c> and <c>pattern</c> (numbers sent as
/// strings). It rejects only what the worker's deserializer would reject; what it does not model (<c>$ref</c> of
/// recursive types, <c>anyOf</c> of polymorphic ones, <c>enum</c>) it lets through, for the worker to judge.
/// </summary>
public static class ArgsSchema
{
    /// <summary>Largest schema a worker announces, in bytes of compact JSON: 8 KB. A larger one is left out (the task is
    /// still declared; its arguments are then checked only by the worker).</summary>
    public const int MaxSchemaBytes = 8 * 1024;

    /// <summary>Most schema bytes one worker announces in all: 32 KB, so that a heartbeat stays small. Tasks past it, in
    /// name order, are declared without a schema.</summary>
    public const int MaxTotalBytes = 32 * 1024;

    /// <summary>Most problems reported for one request's arguments.</summary>
    public const int MaxErrors = 10;

    private const int MaxDepth = 32;
    private static readonly string[] ReferenceKinds = ["object", "array", "string"];
    private static readonly string[] KindOrder = ["object", "array", "string", "integer", "number", "boolean", "null"];
    private static readonly TimeSpan PatternTimeout = TimeSpan.FromMilliseconds(50);

    /// <summary>The schema of <paramref name="argsType"/>, or null for a type that takes any JSON
    /// (<see cref="JsonElement"/>, <see cref="NoArgs"/>) or that the exporter cannot describe.</summary>
    public static JsonElement? For(Type argsType)
    {
        ArgumentNullException.ThrowIfNull(argsType);
        if (argsType == typeof(JsonElement) || argsType == typeof(NoArgs) || argsType == typeof(object))
        {
            return null;
        }
        try
        {
            // As the serializer's first use does: fills in the reflection resolver, without which GetTypeInfo finds none.
            ConveyorJson.Options.MakeReadOnly(populateMissingResolver: true);
            var node = ConveyorJson.Options.GetTypeInfo(argsType).GetJsonSchemaAsNode();
            return JsonSerializer.SerializeToElement(node);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
        catch (NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>The schemas of <paramref name="tasks"/> within <see cref="MaxSchemaBytes"/> each and
    /// <see cref="MaxTotalBytes"/> in all, by task name; <paramref name="leftOut"/> receives the names of tasks whose
    /// schema did not fit.</summary>
    public static Dictionary<string, JsonElement> Announced(IEnumerable<TaskDescriptor> tasks, List<string> leftOut)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        ArgumentNullException.ThrowIfNull(leftOut);
        var schemas = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        var total = 0;
        foreach (var task in tasks.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            if (task.ArgsSchema is not { } schema)
            {
                continue;
            }
            var size = schema.GetRawText().Length;
            if (size > MaxSchemaBytes || total + size > MaxTotalBytes)
            {
                leftOut.Add(task.Name);
                continue;
            }
            total += size;
            schemas[task.Name] = schema;
        }
        return schemas;
    }

    /// <summary>Adds to <paramref name="errors"/> the problems of <paramref name="argsJson"/> (null: no arguments) against
    /// <paramref name="schema"/>, naming each field under <paramref name="field"/> (<c>args</c>, <c>tasks[2].args</c>):
    /// <c>args.width</c>, <c>args.tags[1]</c>. Returns true when there are none.</summary>
    public static bool Validate(JsonElement schema, string? argsJson, string task, string field, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        var before = errors.Count;
        if (argsJson is null)
        {
            // The worker reads missing arguments as JSON null, and refuses null for a class type (TaskDescriptor.ValidateArgs).
            if (RefusesNull(schema))
            {
                errors.Add(new(field, $"task '{task}' needs arguments: {Describe(schema)}"));
            }
            return errors.Count == before;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(argsJson);
        }
        catch (JsonException ex)
        {
            errors.Add(new(field, $"is not valid JSON: {ex.Message}"));
            return false;
        }
        using (document)
        {
            if (document.RootElement.ValueKind == JsonValueKind.Null && RefusesNull(schema))
            {
                errors.Add(new(field, $"task '{task}' needs arguments: {Describe(schema)}"));
            }
            else
            {
                Check(schema, document.RootElement, field, 0, errors, before);
            }
        }
        return errors.Count == before;
    }

    private static void Check(JsonElement schema, JsonElement value, string field, int depth, List<FieldError> errors, int before)
    {
        if (errors.Count - before >= MaxErrors || depth > MaxDepth || schema.ValueKind != JsonValueKind.Object
            || schema.TryGetProperty("$ref", out _))
        {
            return;
        }
        if (value.ValueKind == JsonValueKind.Null && depth > 0 && schema.TryGetProperty("type", out var nullable)
            && Kinds(nullable) is var kinds && kinds.Overlaps(ReferenceKinds)
            && !(schema.TryGetProperty("pattern", out _) && (kinds.Contains("integer") || kinds.Contains("number"))))
        {
            // The exporter writes a non-nullable reference (string Name) without "null", but Conveyor's JSON settings do
            // not enforce nullable annotations: the worker reads null into it.
            return;
        }
        if (schema.TryGetProperty("type", out var type) && !TypeMatches(type, value))
        {
            errors.Add(new(field, $"is {Kind(value)}; expected {Describe(schema)}"));
            return;
        }
        switch (value.ValueKind)
        {
            case JsonValueKind.String when schema.TryGetProperty("pattern", out var pattern) && pattern.ValueKind == JsonValueKind.String:
                if (!PatternMatches(pattern.GetString()!, value.GetString()!))
                {
                    errors.Add(new(field, $"'{Shorten(value.GetString()!)}' does not read as {Describe(schema)}"));
                }
                break;
            case JsonValueKind.Object:
                CheckObject(schema, value, field, depth, errors, before);
                break;
            case JsonValueKind.Array when schema.TryGetProperty("items", out var items):
                var index = 0;
                foreach (var item in value.EnumerateArray())
                {
                    Check(items, item, $"{field}[{index}]", depth + 1, errors, before);
                    index++;
                }
                break;
        }
    }

    private static void CheckObject(JsonElement schema, JsonElement value, string field, int depth, List<FieldError> errors, int before)
    {
        // Conveyor reads arguments with web defaults: property names match case-insensitively.
        var properties = new Dictionary<string, JsonElement>(StringComparer.OrdinalIgnoreCase);
        if (schema.TryGetProperty("properties", out var declared) && declared.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in declared.EnumerateObject())
            {
                properties.TryAdd(property.Name, property.Value);
            }
        }
        schema.TryGetProperty("additionalProperties", out var additional);
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var property in value.EnumerateObject())
        {
            seen.Add(property.Name);
            var path = $"{field}.{property.Name}";
            if (properties.TryGetValue(property.Name, out var propertySchema))
            {
                Check(propertySchema, property.Value, path, depth + 1, errors, before);
            }
            else if (additional.ValueKind == JsonValueKind.False)
            {
                errors.Add(new(path, $"is not a field of these arguments; they take {string.Join(", ", properties.Keys)}"));
            }
            else if (additional.ValueKind == JsonValueKind.Object)
            {
                Check(additional, property.Value, path, depth + 1, errors, before);
            }
        }
        if (schema.TryGetProperty("required", out var required) && required.ValueKind == JsonValueKind.Array)
        {
            foreach (var name in required.EnumerateArray())
            {
                if (name.ValueKind == JsonValueKind.String && !seen.Contains(name.GetString()!) && errors.Count - before < MaxErrors)
                {
                    var expected = properties.TryGetValue(name.GetString()!, out var s) ? $": {Describe(s)}" : "";
                    errors.Add(new($"{field}.{name.GetString()}", $"is required{expected}"));
                }
            }
        }
    }

    private static bool TypeMatches(JsonElement type, JsonElement value)
    {
        if (type.ValueKind == JsonValueKind.String)
        {
            return KindMatches(type.GetString()!, value);
        }
        if (type.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in type.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String && KindMatches(item.GetString()!, value))
                {
                    return true;
                }
            }
            return false;
        }
        return true;
    }

    private static bool KindMatches(string type, JsonElement value) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && IsInteger(value),
        // A type this check does not know: let the worker judge.
        _ => true,
    };

    /// <summary>Whether the worker reads <paramref name="number"/> as an integer: System.Text.Json reads <c>1.0</c> and
    /// <c>1e3</c> into no integer type, so neither counts (JSON Schema would say they are integers).</summary>
    private static bool IsInteger(JsonElement number) => number.GetRawText().AsSpan().IndexOfAny('.', 'e', 'E') < 0;

    /// <summary>Whether the worker refuses JSON null (or no arguments) for this root schema: it does for any reference
    /// type (TaskDescriptor.ValidateArgs), which the exporter writes as an object, array or string that may be null;
    /// a string with a pattern is a number that may be written as a string.</summary>
    private static bool RefusesNull(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object || !schema.TryGetProperty("type", out var type))
        {
            return false;
        }
        var kinds = Kinds(type);
        return kinds.Contains("object") || kinds.Contains("array") || (kinds.Contains("string") && !schema.TryGetProperty("pattern", out _))
            || !kinds.Contains("null");
    }

    private static HashSet<string> Kinds(JsonElement type) => type.ValueKind switch
    {
        JsonValueKind.Array => type.EnumerateArray().Select(t => t.ToString()).ToHashSet(StringComparer.Ordinal),
        JsonValueKind.String => new HashSet<string>(StringComparer.Ordinal) { type.GetString()! },
        _ => new HashSet<string>(StringComparer.Ordinal),
    };

    private static bool PatternMatches(string pattern, string value)
    {
        try
        {
            return Regex.IsMatch(value, pattern, RegexOptions.CultureInvariant, PatternTimeout);
        }
        catch (ArgumentException)
        {
            return true;
        }
        catch (RegexMatchTimeoutException)
        {
            return true;
        }
    }

    private static string Describe(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object || !schema.TryGetProperty("type", out var type))
        {
            return "any JSON";
        }
        var kinds = Kinds(type);
        if (kinds.Contains("string") && (kinds.Contains("integer") || kinds.Contains("number")) && schema.TryGetProperty("pattern", out _))
        {
            // A number the worker also reads from a string ("12"): say what it is, not how it may be written.
            kinds.Remove("string");
        }
        return string.Join(" or ", kinds.OrderBy(k => Array.IndexOf(KindOrder, k)).Select(k => k switch
        {
            "object" => "an object",
            "array" => "an array",
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "true or false",
            "null" => "null",
            _ => k,
        }));
    }

    private static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => IsInteger(value) ? "an integer" : "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
