using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conveyor.Server.Tests.Fuzzing;

/// <summary>How the body goes on the wire.</summary>
internal enum BodyMode
{
    /// <summary>All at once, as announced.</summary>
    Whole,
    /// <summary>In pieces with pauses between them.</summary>
    Slow,
    /// <summary>Half of what the head announced, then the end of the stream.</summary>
    Truncated,
}

/// <summary>One generated request. <see cref="ProtocolLevel"/>: malformed at the HTTP layer, so Kestrel may refuse it
/// before the application sees it (an empty 400/414/431 with <c>Connection: close</c>), which cannot carry problem details.</summary>
internal sealed record FuzzRequest(string Kind, string Method, string Route, byte[] Head, byte[] Body, BodyMode BodyMode, bool ProtocolLevel)
{
    /// <summary>The request line and headers, printable, for a failure message.</summary>
    public string Describe()
    {
        var head = Encoding.Latin1.GetString(Head);
        var text = head.Length > 600 ? head[..600] + "…" : head;
        var body = Encoding.Latin1.GetString(Body, 0, Math.Min(Body.Length, 300));
        return Escape(text) + " body(" + Body.Length + " bytes, " + BodyMode + "): " + Escape(body);
    }

    private static string Escape(string text) =>
        string.Concat(text.Select(c => c is < ' ' or > '~' ? $"\\x{(int)c:x2}" : c.ToString()));
}

/// <summary>An API route from the OpenAPI document: method, path template, and its query parameters.</summary>
internal sealed record FuzzRoute(string Method, string Path, IReadOnlyList<string> QueryParameters, bool HasBody)
{
    public string Key => Method + " " + Path;
}

/// <summary>
/// Generates hostile requests, deterministically from a seed and an index (any one can be made again alone): every route
/// of the OpenAPI document with mutated parameters and bodies, plus requests malformed at every layer (request line,
/// headers, framing, body, JSON, values).
/// </summary>
internal sealed class FuzzRequestGenerator
{
    /// <summary>Kinds and their weights (out of the total).</summary>
    public static readonly IReadOnlyList<(string Kind, int Weight)> Kinds =
    [
        ("route-parameters", 14),
        ("json-wrong-type", 10),
        ("json-huge-number", 6),
        ("json-deep", 3),
        ("json-invalid-utf8", 6),
        ("json-truncated", 6),
        ("json-malformed", 8),
        ("json-oversized", 1),
        ("body-truncated", 3),
        ("body-slow", 1),
        ("content-type", 6),
        ("path-traversal", 6),
        ("path-control-encoded", 6),
        ("path-control-raw", 3),
        ("header-injection", 6),
        ("method", 5),
        ("auth", 5),
        ("http-framing", 4),
        ("accept", 3),
    ];

    private static readonly int TotalWeight = Kinds.Sum(k => k.Weight);

    private static readonly string[] HostileSegments =
    [
        "..", "../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2f", "%252e%252e%252f", "....//....//",
        "%00", "a%00b", "%00.json", "%0d%0aSet-Cookie:%20x=1", "%0aLocation:%20http://attacker.example", "%01%02%03%7f", "%1b[31m",
        "%ff%fe", "%c0%ae%c0%ae%c0%af", "%ed%a0%80", "%e2%80%ae", "%f4%90%80%80", "%", "%zz", "%2", "%25", "%2F", "%5c..%5c..%5cwindows",
        "99999999999999999999999999999999", "-1", "0", "1e400", "-0", "0x7fffffff", "NaN", "Infinity",
        "00000000-0000-0000-0000-000000000000", "{00000000-0000-0000-0000-000000000000}", "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "{id}", "%7bid%7d", "%20", "+", "*", "~", ";", "a;b=c", "'%20OR%20'1'='1", "1;DROP%20TABLE%20tasks", "$(id)", "%60id%60",
        "%3cscript%3ealert(1)%3c%2fscript%3e", "%e4%bd%a0%e5%a5%bd", "%f0%9f%92%a9", "CON", "aux.txt", ".env", ".git%2fconfig",
        "default", "fuzz", "conveyor.noop",
    ];

    private static readonly string[] HostileQueryValues =
    [
        "", "%00", "a%00b", "-1", "0", "1001", "99999999999999999999999999", "1e999", "-9223372036854775809", "2147483648", "1.5", "NaN",
        "%ff%fe", "%0d%0aX-Injected:%201", "true", "null", "[]", "%7b%7d", "dead", "DEAD", "queued", "9999-99-99", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.9999999+14:00", "-P1D", "PT999999999999H", "2026-01-01T00:00:00Z", "%27%20OR%201=1--",
        "eyJ0IjoiMSJ9", "Zm9v", "zzzz", "%e2%80%ae", "%c0%80",
    ];

    private readonly IReadOnlyList<FuzzRoute> _routes;
    private readonly IReadOnlyList<FuzzRoute> _bodyRoutes;
    private readonly string _authority;
    private readonly string _apiKey;
    private readonly int _seed;

    public FuzzRequestGenerator(IReadOnlyList<FuzzRoute> routes, string authority, string apiKey, int seed)
    {
        _routes = routes;
        _bodyRoutes = routes.Where(r => r.HasBody).ToList();
        _authority = authority;
        _apiKey = apiKey;
        _seed = seed;
    }

    /// <summary>Reads the routes from the OpenAPI document.</summary>
    public static IReadOnlyList<FuzzRoute> RoutesFrom(JsonElement openApi)
    {
        var routes = new List<FuzzRoute>();
        foreach (var path in openApi.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                if (operation.Name is not ("get" or "post" or "put" or "delete" or "patch"))
                {
                    continue;
                }
                var query = new List<string>();
                if (operation.Value.TryGetProperty("parameters", out var parameters))
                {
                    foreach (var parameter in parameters.EnumerateArray())
                    {
                        if (parameter.GetProperty("in").GetString() == "query")
                        {
                            query.Add(parameter.GetProperty("name").GetString()!);
                        }
                    }
                }
                var method = operation.Name.ToUpperInvariant();
                var hasBody = operation.Value.TryGetProperty("requestBody", out _) || Template(method, path.Name) is not null;
                routes.Add(new FuzzRoute(method, path.Name, query, hasBody));
            }
        }
        return routes;
    }

    /// <summary>A valid body for the route, the starting point of the mutations; null when it takes none.</summary>
    public static JsonNode? Template(string method, string path) => (method, path) switch
    {
        ("POST", "/api/v1/tasks") => TaskTemplate(),
        ("POST", "/api/v1/tasks/batch") => new JsonObject { ["tasks"] = new JsonArray(TaskTemplate(), TaskTemplate()) },
        ("POST", "/api/v1/tasks/retry") => new JsonObject { ["state"] = "dead", ["queue"] = "fuzz", ["task"] = "conveyor.noop" },
        ("POST", "/api/v1/tasks/purge") => new JsonObject { ["state"] = "dead", ["queue"] = "fuzz-none", ["limit"] = 10 },
        ("POST", "/api/v1/workflows") => JsonNode.Parse("""
            {"name":"fuzz","steps":[{"id":"a","task":"conveyor.noop","args":{"n":1}},{"id":"b","task":"conveyor.noop","after":["a"],"queue":"fuzz"}]}
            """),
        ("POST", "/api/v1/schedules") => JsonNode.Parse("""
            {"name":"fuzz-schedule","every":"PT1H","task":"conveyor.noop","args":{"n":1},"queue":"fuzz","priority":1,"timeZone":"UTC"}
            """),
        ("PUT", "/api/v1/schedules/{name}") => JsonNode.Parse("""{"every":"PT2H","task":"conveyor.noop","args":{"n":2},"maxAttempts":2}"""),
        ("POST", "/api/v1/session") => new JsonObject { ["key"] = "not-the-key" },
        _ => null,
    };

    private static JsonObject TaskTemplate() => new()
    {
        ["task"] = "conveyor.noop",
        ["args"] = new JsonObject { ["n"] = 1, ["text"] = "hello" },
        ["queue"] = "fuzz",
        ["priority"] = 1,
        ["delay"] = "PT1H",
        ["maxAttempts"] = 3,
        ["timeout"] = "PT5S",
        ["headers"] = new JsonObject { ["x-fuzz"] = "1" },
        ["retry"] = new JsonObject { ["backoff"] = "exponential", ["delay"] = "PT1S", ["maxDelay"] = "PT1M", ["jitter"] = 0.1 },
    };

    public FuzzRequest Generate(int index)
    {
        // Not HashCode.Combine: its seed changes with each process, and a failure must be made again from its index.
        var random = new Random(unchecked((_seed * 1_000_003) ^ index));
        var pick = random.Next(TotalWeight);
        var kind = Kinds[0].Kind;
        foreach (var (name, weight) in Kinds)
        {
            if (pick < weight)
            {
                kind = name;
                break;
            }
            pick -= weight;
        }
        return kind switch
        {
            "route-parameters" => RouteParameters(random, kind),
            "json-wrong-type" => JsonBody(random, kind, WrongType),
            "json-huge-number" => JsonBody(random, kind, HugeNumber),
            "json-deep" => RawBody(random, kind, DeepJson(random)),
            "json-invalid-utf8" => RawBody(random, kind, InvalidUtf8(random)),
            "json-truncated" => RawBody(random, kind, Truncate(random)),
            "json-malformed" => RawBody(random, kind, Malformed(random)),
            "json-oversized" => RawBody(random, kind, Oversized(random)),
            "body-truncated" => WithBodyMode(random, kind, BodyMode.Truncated),
            "body-slow" => WithBodyMode(random, kind, BodyMode.Slow),
            "content-type" => ContentType(random, kind),
            "path-traversal" => PathTraversal(random, kind),
            "path-control-encoded" => PathControlEncoded(random, kind),
            "path-control-raw" => PathControlRaw(random, kind),
            "header-injection" => HeaderInjection(random, kind),
            "method" => Method(random, kind),
            "auth" => Auth(random, kind),
            "http-framing" => Framing(random, kind),
            "accept" => Accept(random, kind),
            _ => throw new InvalidOperationException(kind),
        };
    }

    // ---- building blocks ----

    private static T Pick<T>(Random random, IReadOnlyList<T> items) => items[random.Next(items.Count)];

    private FuzzRoute PickRoute(Random random) => Pick(random, _routes);

    private FuzzRoute PickBodyRoute(Random random) => Pick(random, _bodyRoutes);

    /// <summary>The route's path with each {parameter} filled: mostly hostile, sometimes plausible.</summary>
    private static string FillPath(Random random, FuzzRoute route, bool hostile)
    {
        var path = route.Path;
        while (path.IndexOf('{', StringComparison.Ordinal) is var open and >= 0)
        {
            var close = path.IndexOf('}', open);
            var name = path[(open + 1)..close];
            var value = hostile && random.Next(3) > 0
                ? Pick(random, HostileSegments)
                : name == "id" ? RandomGuid(random).ToString() : "fuzz-" + random.Next(20).ToString(CultureInfo.InvariantCulture);
            if (hostile && random.Next(20) == 0)
            {
                value = new string('a', random.Next(2_000, 9_000));
            }
            path = path[..open] + value + path[(close + 1)..];
        }
        return path;
    }

    private static string Query(Random random, FuzzRoute route)
    {
        var names = route.QueryParameters.Concat(["unknown", "limit", "cursor", "%00", "a%0d%0ab"]).ToList();
        var parts = new List<string>();
        for (var i = random.Next(0, 4); i > 0; i--)
        {
            var name = Pick(random, names);
            var value = random.Next(12) == 0 ? new string('9', random.Next(100, 5_000)) : Pick(random, HostileQueryValues);
            parts.Add(name + "=" + value);
            if (random.Next(6) == 0)
            {
                // The same parameter twice.
                parts.Add(name + "=" + Pick(random, HostileQueryValues));
            }
        }
        return parts.Count == 0 ? "" : "?" + string.Join('&', parts);
    }

    private byte[] Head(string method, string target, IEnumerable<string>? headers = null, int? contentLength = null, string? contentType = "application/json",
        bool auth = true, string? accept = null, string version = "HTTP/1.1")
    {
        var head = new StringBuilder();
        head.Append(method).Append(' ').Append(target).Append(' ').Append(version).Append("\r\n");
        head.Append("Host: ").Append(_authority).Append("\r\n");
        if (auth)
        {
            head.Append("Authorization: Bearer ").Append(_apiKey).Append("\r\n");
        }
        if (accept is not null)
        {
            head.Append("Accept: ").Append(accept).Append("\r\n");
        }
        if (contentLength is { } length)
        {
            if (contentType is not null)
            {
                head.Append("Content-Type: ").Append(contentType).Append("\r\n");
            }
            head.Append("Content-Length: ").Append(length.ToString(CultureInfo.InvariantCulture)).Append("\r\n");
        }
        foreach (var header in headers ?? [])
        {
            head.Append(header).Append("\r\n");
        }
        head.Append("\r\n");
        return Encoding.Latin1.GetBytes(head.ToString());
    }

    private static byte[] Utf8(JsonNode? node) => node is null ? [] : Encoding.UTF8.GetBytes(node.ToJsonString());

    private FuzzRequest Request(string kind, FuzzRoute route, string target, byte[] body, BodyMode mode = BodyMode.Whole, string? contentType = "application/json",
        bool protocolLevel = false, IEnumerable<string>? headers = null, bool auth = true, string? accept = null, string? method = null)
    {
        method ??= route.Method;
        var sendLength = body.Length > 0 || method is "POST" or "PUT" or "PATCH";
        return new FuzzRequest(kind, method, route.Key, Head(method, target, headers, sendLength ? body.Length : null, contentType, auth, accept), body, mode, protocolLevel);
    }

    // ---- kinds ----

    private FuzzRequest RouteParameters(Random random, string kind)
    {
        var route = PickRoute(random);
        var body = Template(route.Method, route.Path);
        if (body is not null && random.Next(2) == 0)
        {
            WrongType(random, body);
        }
        return Request(kind, route, FillPath(random, route, hostile: true) + Query(random, route), Utf8(body));
    }

    private FuzzRequest JsonBody(Random random, string kind, Action<Random, JsonNode> mutate)
    {
        var route = PickBodyRoute(random);
        var body = Template(route.Method, route.Path) ?? new JsonObject { ["x"] = 1 };
        for (var i = random.Next(1, 4); i > 0; i--)
        {
            mutate(random, body);
        }
        return Request(kind, route, FillPath(random, route, hostile: false), Utf8(body));
    }

    private FuzzRequest RawBody(Random random, string kind, Func<JsonNode, byte[]> make)
    {
        var route = PickBodyRoute(random);
        var body = Template(route.Method, route.Path) ?? new JsonObject { ["x"] = 1 };
        return Request(kind, route, FillPath(random, route, hostile: false), make(body));
    }

    /// <summary>Every value reachable in the document, with its parent and key, for the mutations to pick from.</summary>
    private static List<(JsonNode Parent, object Key)> Slots(JsonNode root)
    {
        var slots = new List<(JsonNode, object)>();
        void Walk(JsonNode node)
        {
            switch (node)
            {
                case JsonObject obj:
                    foreach (var (name, child) in obj.ToList())
                    {
                        slots.Add((obj, name));
                        if (child is not null)
                        {
                            Walk(child);
                        }
                    }
                    break;
                case JsonArray array:
                    for (var i = 0; i < array.Count; i++)
                    {
                        slots.Add((array, i));
                        if (array[i] is { } child)
                        {
                            Walk(child);
                        }
                    }
                    break;
            }
        }
        Walk(root);
        return slots;
    }

    private static void Set(JsonNode parent, object key, JsonNode? value)
    {
        if (parent is JsonObject obj)
        {
            obj[(string)key] = value;
        }
        else if (parent is JsonArray array)
        {
            array[(int)key] = value;
        }
    }

    private static readonly Func<Random, JsonNode?>[] WrongValues =
    [
        _ => null,
        _ => JsonValue.Create(true),
        _ => JsonValue.Create(-1),
        _ => JsonValue.Create(0),
        _ => JsonValue.Create(2147483648L),
        _ => JsonValue.Create(1.5),
        _ => JsonValue.Create(""),
        _ => JsonValue.Create(" "),
        _ => JsonValue.Create("\u0000"),
        _ => JsonValue.Create("\u202e\u0007\r\nX-Injected: 1"),
        _ => JsonValue.Create("../../etc/passwd"),
        _ => JsonValue.Create("default"),
        _ => JsonValue.Create("PT-1S"),
        _ => JsonValue.Create("P99999999999D"),
        _ => JsonValue.Create("9999-12-31T23:59:59Z"),
        _ => JsonValue.Create("0001-01-01T00:00:00Z"),
        r => JsonValue.Create(new string('x', r.Next(300, 70_000))),
        _ => new JsonArray(),
        _ => new JsonArray(1, "a", null),
        _ => new JsonObject(),
        _ => new JsonObject { ["task"] = "conveyor.noop" },
        _ => JsonValue.Create("conveyor.sleep"),
        _ => JsonValue.Create("conveyor.http.request"),
    ];

    private static void WrongType(Random random, JsonNode body)
    {
        var slots = Slots(body);
        var roll = random.Next(10);
        if (roll == 0 && body is JsonObject root)
        {
            // A field the API does not know, or a known one removed.
            root["field" + random.Next(100)] = Pick(random, WrongValues)(random);
            return;
        }
        if (roll == 1 && body is JsonObject removable && removable.Count > 0)
        {
            removable.Remove(removable.ElementAt(random.Next(removable.Count)).Key);
            return;
        }
        if (slots.Count == 0)
        {
            return;
        }
        var (parent, key) = Pick(random, slots);
        Set(parent, key, Pick(random, WrongValues)(random));
    }

    private static readonly string[] HugeNumbers =
    [
        "1e400", "-1e400", "1e-400", "123456789012345678901234567890", "-123456789012345678901234567890", "9223372036854775808",
        "-9223372036854775809", "2147483648", "-2147483649", "4294967296", "1.7976931348623157e309", "0.0000000000000000000000000001",
        "-0", "1E+2", "0.5", "1e2", "-1", "10000000", "1" + new string('0', 400),
    ];

    private static void HugeNumber(Random random, JsonNode body)
    {
        var slots = Slots(body);
        var (parent, key) = Pick(random, slots);
        // JsonNode cannot hold 1e400 as a number: parse the literal as its own document (the parser keeps the text).
        Set(parent, key, JsonNode.Parse(Pick(random, HugeNumbers)));
    }

    private static Func<JsonNode, byte[]> DeepJson(Random random) => template =>
    {
        var depth = Pick(random, new[] { 63, 64, 65, 200, 1_000, 20_000 });
        var open = random.Next(3) switch { 0 => "[", 1 => "{\"a\":", _ => "{\"args\":" };
        var close = open == "[" ? "]" : "}";
        var text = new StringBuilder();
        if (random.Next(2) == 0 && template is JsonObject obj && obj.ContainsKey("task"))
        {
            // Deep inside an otherwise valid task's arguments.
            var copy = obj.DeepClone().AsObject();
            copy.Remove("args");
            var prefix = copy.ToJsonString().TrimEnd('}');
            text.Append(prefix).Append(copy.Count > 0 ? "," : "").Append("\"args\":");
            text.Insert(text.Length, string.Concat(Enumerable.Repeat(open, depth))).Append(1).Append(string.Concat(Enumerable.Repeat(close, depth))).Append('}');
            return Encoding.UTF8.GetBytes(text.ToString());
        }
        text.Append(string.Concat(Enumerable.Repeat(open, depth))).Append(1).Append(string.Concat(Enumerable.Repeat(close, depth)));
        return Encoding.UTF8.GetBytes(text.ToString());
    };

    private static readonly byte[][] InvalidUtf8Sequences =
    [
        [0xff], [0xfe], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xc3], [0xe2, 0x82],
        [0xf8, 0x88, 0x80, 0x80, 0x80], [0x00], [0x01], [0x1b], [0x7f],
    ];

    private static readonly string[] BadEscapes = ["\\ud800", "\\udfff", "\\ud800\\u0041", "\\udc00\\ud800", "\\u0000", "\\uZZZZ", "\\x41", "\\"];

    private static Func<JsonNode, byte[]> InvalidUtf8(Random random) => template =>
    {
        var text = Encoding.UTF8.GetBytes(template.ToJsonString());
        // Inside a string value: after an opening quote.
        var quotes = Enumerable.Range(0, text.Length).Where(i => text[i] == (byte)'"').ToList();
        var at = quotes.Count == 0 ? 0 : quotes[random.Next(quotes.Count)] + 1;
        byte[] insert = random.Next(2) == 0
            ? Pick(random, InvalidUtf8Sequences)
            : Encoding.ASCII.GetBytes(Pick(random, BadEscapes));
        return [.. text.AsSpan(0, at), .. insert, .. text.AsSpan(at)];
    };

    private static Func<JsonNode, byte[]> Truncate(Random random) => template =>
    {
        var text = Encoding.UTF8.GetBytes(template.ToJsonString());
        return text.AsSpan(0, random.Next(0, text.Length)).ToArray();
    };

    private static readonly string[] MalformedBodies =
    [
        "", " ", "null", "true", "1", "\"text\"", "[]", "[{}]", "{", "}", "{}", "{,}", "{\"task\":}", "{\"task\" \"conveyor.noop\"}",
        "{'task':'conveyor.noop'}", "{task:\"conveyor.noop\"}", "{\"task\":\"conveyor.noop\",}", "{\"task\":\"conveyor.noop\"} trailing",
        "{\"task\":\"conveyor.noop\"}{}", "{\"task\":NaN}", "{\"task\":Infinity}", "{\"priority\":-Infinity}", "/* c */{\"task\":\"conveyor.noop\"}",
        "{\"task\":\"conveyor.noop\",\"task\":\"conveyor.sleep\"}", "{\"tasks\":[1,2,3]}", "{\"steps\":{}}", "{\"steps\":[[]]}", "{\"key\":1}",
        "\uFEFF{\"task\":\"conveyor.noop\"}", "\u0000", "<xml/>", "task=conveyor.noop", "--x\r\nContent-Disposition: form-data\r\n\r\n\r\n--x--",
        "{\"task\":\"conveyor.noop\",\"args\":\"\\u0000\"}", "{\"\\u0000\":1}", "{\"task\":\"\\ud800\"}", "{\"name\":\"\\udc00\",\"every\":\"PT1H\",\"task\":\"conveyor.noop\"}",
        "{\"task\":\"conveyor.noop\",\"retry\":{\"jitter\":1e400}}", "{\"task\":\"conveyor.noop\",\"headers\":{\"a\":1}}",
        "{\"task\":\"conveyor.noop\",\"headers\":{\"\":\"\"}}", "{\"task\":\"conveyor.noop\",\"headers\":{\"a\\r\\nb\":\"c\\r\\nd\"}}",
        "{\"task\":\"conveyor.noop\",\"eta\":\"yesterday\"}", "{\"task\":\"conveyor.noop\",\"expiresAt\":\"0000-00-00\"}",
        "{\"task\":\"conveyor.noop\",\"uniqueKey\":\"\",\"uniqueFor\":\"PT0S\"}", "{\"every\":\"PT0S\",\"task\":\"conveyor.noop\",\"name\":\"z\"}",
        "{\"cron\":\"* * * * * * * *\",\"task\":\"conveyor.noop\",\"name\":\"z\"}", "{\"cron\":\"99 99 99 99 99\",\"task\":\"conveyor.noop\",\"name\":\"z\"}",
        "{\"cron\":\"0 0 30 2 *\",\"task\":\"conveyor.noop\",\"name\":\"z\",\"timeZone\":\"Mars/Olympus\"}",
        "{\"steps\":[{\"id\":\"a\",\"task\":\"conveyor.noop\",\"after\":[\"a\"]}]}", "{\"steps\":[{\"id\":\"a\",\"task\":\"conveyor.noop\",\"after\":[\"b\"]},{\"id\":\"b\",\"task\":\"conveyor.noop\",\"after\":[\"a\"]}]}",
        "{\"chain\":[]}", "{\"group\":[{}]}", "{\"chord\":{\"header\":[],\"body\":null}}", "{\"state\":\"all\",\"all\":\"yes\"}", "{\"all\":true,\"state\":\"succeeded\",\"limit\":-5}",
    ];

    private static Func<JsonNode, byte[]> Malformed(Random random) => _ =>
    {
        var text = Pick(random, MalformedBodies);
        if (random.Next(5) == 0)
        {
            // Many keys.
            text = "{" + string.Join(',', Enumerable.Range(0, random.Next(1_000, 5_000)).Select(i => $"\"k{i}\":{i}")) + "}";
        }
        return Encoding.UTF8.GetBytes(text);
    };

    private static Func<JsonNode, byte[]> Oversized(Random random) => template =>
    {
        // Just over the 1 MiB limit, or well over.
        var size = Pick(random, new[] { 1024 * 1024 + 1, 1536 * 1024 });
        var copy = template.DeepClone();
        if (copy is JsonObject obj)
        {
            obj["args"] = new string('x', size);
        }
        return Utf8(copy);
    };

    private FuzzRequest WithBodyMode(Random random, string kind, BodyMode mode)
    {
        var route = PickBodyRoute(random);
        var body = Utf8(Template(route.Method, route.Path) ?? new JsonObject { ["x"] = 1 });
        if (mode == BodyMode.Truncated && body.Length < 2)
        {
            body = "{\"x\":1}"u8.ToArray();
        }
        return Request(kind, route, FillPath(random, route, hostile: false), body, mode);
    }

    private static readonly string?[] ContentTypes =
    [
        null, "text/plain", "text/plain; charset=utf-8", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
        "application/json; charset=utf-16", "application/json; charset=latin1", "application/json; charset=\"", "application/octet-stream",
        "image/png", "application/jsonx", "json", "*/*", "application/*", "", ";", "application/problem+json", "application/merge-patch+json",
        "application/json, text/plain", "text/html; charset=utf-7",
    ];

    private FuzzRequest ContentType(Random random, string kind)
    {
        var route = PickBodyRoute(random);
        var template = Template(route.Method, route.Path);
        var body = random.Next(3) == 0 ? Encoding.Unicode.GetBytes(template?.ToJsonString() ?? "{}") : Utf8(template);
        return Request(kind, route, FillPath(random, route, hostile: false), body, contentType: Pick(random, ContentTypes));
    }

    private static readonly string[] TraversalPaths =
    [
        "/api/v1/../../../../etc/passwd", "/api/v1/tasks/../../../../etc/passwd", "/api/v1/tasks/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd", "/api/%2e%2e/api/v1/tasks", "/api/v1/%2e%2e%2fv1%2ftasks", "/assets/..%2f..%2fappsettings.json",
        "/assets/../../Conveyor.Server.dll", "/assets/%2e%2e%2f%2e%2e%2fConveyor.Server.deps.json", "/assets/..\\..\\appsettings.json",
        "/assets/%5c..%5c..%5cappsettings.json", "/assets/....//....//etc/passwd", "/assets/%252e%252e%252fetc%252fpasswd",
        "/assets/index.js%00.png", "/assets/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", "//etc/passwd", "///api/v1/tasks", "/./api/v1/./tasks",
        "/api/v1/tasks/.", "/api/v1/tasks/..", "/api/v1//tasks", "/API/V1/TASKS", "/api/v1/tasks/", "/openapi/../api/v1/tasks",
        "/openapi/v1.json/..%2f..%2f", "/health/../../etc/shadow", "/api/v1/schedules/..%2F..%2Ftasks", "/api/v1/queues/..%2f/pause",
        "/~root/.ssh/id_rsa", "/.git/config", "/.env", "/appsettings.json", "/conveyor.db", "/proc/self/environ",
    ];

    private FuzzRequest PathTraversal(Random random, string kind)
    {
        var target = Pick(random, TraversalPaths);
        var route = new FuzzRoute(random.Next(4) == 0 ? "POST" : "GET", "(traversal)", [], false);
        return Request(kind, route, target, route.Method == "POST" ? "{}"u8.ToArray() : []);
    }

    private static readonly string[] EncodedControls =
    [
        "%00", "%01", "%07", "%08", "%09", "%0a", "%0d", "%0d%0a", "%1b", "%1f", "%7f", "%c2%85", "%e2%80%a8", "%e2%80%a9", "%ef%bb%bf", "%ef%bf%bf",
    ];

    private FuzzRequest PathControlEncoded(Random random, string kind)
    {
        var route = PickRoute(random);
        var path = FillPath(random, route, hostile: false);
        var control = Pick(random, EncodedControls);
        // In a parameter, in the middle of a fixed segment, or at the end.
        var slash = path.LastIndexOf('/');
        path = random.Next(3) switch
        {
            0 => path + control,
            1 => path[..(slash + 1)] + control + path[(slash + 1)..],
            _ => path + "/" + control + "x",
        };
        return Request(kind, route, path, Utf8(Template(route.Method, route.Path)));
    }

    private static readonly string[] RawControls = ["\0", "\x01", "\t", "\x0b", "\x0c", "\r", "\x1b", "\x7f", "\xff", "\xc3\xa9", " ", "\"", "<", "\\", "^", "`", "{", "|", "}"];

    private FuzzRequest PathControlRaw(Random random, string kind)
    {
        var route = PickRoute(random);
        var path = FillPath(random, route, hostile: false);
        var at = random.Next(1, path.Length + 1);
        path = path[..at] + Pick(random, RawControls) + path[at..];
        return Request(kind, route, path, Utf8(Template(route.Method, route.Path)), protocolLevel: true);
    }

    private static readonly string[] InjectedHeaders =
    [
        "X-Test: a\rInjected: 1", "X-Test: a\nInjected: 1", "X-Test: a\0b", "X-Test: \x01\x02", "X-Test: caf\xe9", "X-Test: \xff\xfe",
        "X-Test:\r\n folded", " X-Test: leading-space", "X-Test : space-before-colon", "X Test: space-in-name", "X-Test", ": no-name",
        "X-Te\x00st: 1", "Host: attacker.example", "Host: ", "Host: 127.0.0.1:1@attacker.example", "X-Forwarded-For: 127.0.0.1, \r",
        "X-Forwarded-Host: attacker.example", "X-Forwarded-Proto: javascript", "X-HTTP-Method-Override: DELETE", "Origin: http://attacker.example",
        "Origin: null", "Sec-Fetch-Site: cross-site", "Referer: http://attacker.example/", "Cookie: conveyor_session=AAAA; conveyor_csrf=\x01",
        "Cookie: conveyor_session=" + new string('A', 6000), "X-Conveyor-CSRF: %0d%0aSet-Cookie:%20x=1", "Expect: 100-continue",
        "Expect: 999-bogus", "Range: bytes=0-1,2-3,4-5", "If-None-Match: " + new string('"', 3000), "Content-Encoding: gzip",
        "Content-Encoding: br, deflate, zstd", "Transfer-Encoding: identity", "traceparent: 00-zzzzzzzz-zzzz-01", "traceparent: " + new string('0', 5000),
        "tracestate: " + new string(',', 2000), "baggage: a=" + new string('b', 9000), "Upgrade: websocket", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings",
        "X-Big: " + new string('x', 40_000),
    ];

    private FuzzRequest HeaderInjection(Random random, string kind)
    {
        var route = PickRoute(random);
        var headers = new List<string>();
        for (var i = random.Next(1, 3); i > 0; i--)
        {
            headers.Add(Pick(random, InjectedHeaders));
        }
        if (random.Next(15) == 0)
        {
            // More headers than Kestrel's default limit of 100.
            headers.AddRange(Enumerable.Range(0, 120).Select(i => $"X-Many-{i}: {i}"));
        }
        return Request(kind, route, FillPath(random, route, hostile: false), Utf8(Template(route.Method, route.Path)), headers: headers, protocolLevel: true);
    }

    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO", "get", "MKCOL", "QUERY"];

    private FuzzRequest Method(Random random, string kind)
    {
        var route = PickRoute(random);
        var method = Pick(random, Methods);
        // CONNECT needs an authority form target; that and lowercase methods can be refused at the protocol level.
        var protocol = method is "CONNECT" or "get";
        var body = method is "GET" or "HEAD" or "OPTIONS" or "TRACE" ? [] : Utf8(Template(route.Method, route.Path));
        return Request(kind, route, FillPath(random, route, hostile: false), body, method: method, protocolLevel: protocol);
    }

    private static readonly string?[] Authorizations =
    [
        null, "", "Bearer", "Bearer ", "Bearer wrong-key", "bearer wrong-key", "Basic Zm9vOmJhcg==", "Bearer %00", "Bearer " + new string('k', 8000),
        "Bearer a b c", "Bearer\tfuzz", "Negotiate xyz", "Digest username=\"x\"", "Bearer \"quoted\"",
    ];

    private FuzzRequest Auth(Random random, string kind)
    {
        var route = PickRoute(random);
        var authorization = Pick(random, Authorizations);
        var headers = authorization is null ? [] : new[] { "Authorization: " + authorization };
        if (random.Next(4) == 0)
        {
            headers = [.. headers, "Authorization: Bearer second"];
        }
        if (random.Next(4) == 0)
        {
            headers = [.. headers, "Cookie: conveyor_session=" + Convert.ToBase64String(RandomGuid(random).ToByteArray()) + "; conveyor_csrf=x"];
        }
        var body = Template(route.Method, route.Path);
        return Request(kind, route, FillPath(random, route, hostile: false), Utf8(body), headers: headers, auth: false);
    }

    private FuzzRequest Framing(Random random, string kind)
    {
        var route = PickBodyRoute(random);
        var path = FillPath(random, route, hostile: false);
        var body = Utf8(Template(route.Method, route.Path) ?? new JsonObject());
        var bodyText = Encoding.UTF8.GetString(body);
        string head;
        byte[] payload = body;
        var auth = $"Authorization: Bearer {_apiKey}\r\n";
        switch (random.Next(12))
        {
            case 0:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Content-Length: {body.Length}\r\nContent-Length: {body.Length + 5}\r\n\r\n";
                break;
            case 1:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Content-Length: {body.Length}\r\nTransfer-Encoding: chunked\r\n\r\n";
                payload = Encoding.ASCII.GetBytes($"{body.Length:x}\r\n{bodyText}\r\n0\r\n\r\n");
                break;
            case 2:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n";
                payload = Encoding.ASCII.GetBytes($"zz\r\n{bodyText}\r\n0\r\n\r\n");
                break;
            case 3:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n";
                payload = Encoding.ASCII.GetBytes($"ffffffffffffffff\r\n{bodyText}\r\n0\r\n\r\n");
                break;
            case 4:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Transfer-Encoding: gzip, chunked\r\n\r\n";
                payload = Encoding.ASCII.GetBytes($"{body.Length:x}\r\n{bodyText}\r\n0\r\n\r\n");
                break;
            case 5:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Content-Length: -1\r\n\r\n";
                break;
            case 6:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Content-Length: 99999999999999999999\r\n\r\n";
                break;
            case 7:
                head = $"{route.Method} {path} HTTP/1.1\r\n{auth}Content-Length: {body.Length}\r\n\r\n";
                break;
            case 8:
                head = $"{route.Method} {path} HTTP/1.1\r\nHost: {_authority}\r\nHost: attacker.example\r\n{auth}Content-Length: {body.Length}\r\n\r\n";
                break;
            case 9:
                head = $"{route.Method} {path} HTTP/2.0\r\nHost: {_authority}\r\n{auth}Content-Length: {body.Length}\r\n\r\n";
                break;
            case 10:
                head = $"{route.Method} http://attacker.example{path} HTTP/1.1\r\nHost: {_authority}\r\n{auth}Content-Length: {body.Length}\r\n\r\n";
                break;
            default:
                head = $"{route.Method} {path} HTTP/1.0\r\nHost: {_authority}\r\n{auth}Content-Length: {body.Length}\r\n\r\n";
                break;
        }
        return new FuzzRequest(kind, route.Method, route.Key, Encoding.Latin1.GetBytes(head), payload, BodyMode.Whole, ProtocolLevel: true);
    }

    private static readonly string[] Accepts =
    [
        "text/html", "application/xml", "text/plain", "image/png", "*/*;q=0", "application/json;q=0", "application/problem+json", "text/event-stream",
        "application/*", ";;;", "\"", new string('a', 3000),
    ];

    private FuzzRequest Accept(Random random, string kind)
    {
        // Errors of every kind (unknown path, wrong method, bad id, bad body) asked for in a type other than JSON.
        var route = PickRoute(random);
        var accept = Pick(random, Accepts);
        return random.Next(4) switch
        {
            0 => Request(kind, route, "/api/v1/no-such-route/" + random.Next(100), [], accept: accept, method: "GET"),
            1 => Request(kind, route, FillPath(random, route, hostile: false), [], accept: accept, method: route.Method == "DELETE" ? "PATCH" : "DELETE"),
            2 => Request(kind, route, FillPath(random, route, hostile: true), Utf8(Template(route.Method, route.Path)), accept: accept),
            _ => Request(kind, route, FillPath(random, route, hostile: false), "{"u8.ToArray(), accept: accept),
        };
    }

    private static Guid RandomGuid(Random random)
    {
        Span<byte> bytes = stackalloc byte[16];
        random.NextBytes(bytes);
        return new Guid(bytes);
    }
}
