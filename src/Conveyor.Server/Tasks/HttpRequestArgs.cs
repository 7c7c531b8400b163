using System.Text.Json;

namespace Conveyor.Server.Tasks;

/// <summary>Arguments of <c>http.request</c>.</summary>
internal sealed record HttpRequestArgs
{
    /// <summary>GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS. Default GET.</summary>
    public string Method { get; init; } = "GET";
    /// <summary>Absolute http or https URL whose host is in <see cref="HttpTaskOptions.AllowedHosts"/>.</summary>
    public required string Url { get; init; }
    /// <summary>Request headers; <c>Content-Type</c> and other content headers apply to the body.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
    /// <summary>Body: a JSON string is sent as it is (text/plain unless a Content-Type header says otherwise);
    /// any other JSON value is sent as JSON (application/json).</summary>
    public JsonElement? Body { get; init; }
    /// <summary>Time limit of the request in seconds. Default <see cref="HttpTaskOptions.DefaultTimeout"/>.</summary>
    public double? TimeoutSeconds { get; init; }
}

/// <summary>Result of <c>http.request</c>.</summary>
/// <param name="Status">HTTP status code.</param>
/// <param name="Headers">Response and content headers, values of a repeated header joined with ", ".</param>
/// <param name="Body">Body decoded as UTF-8, cut at <see cref="HttpTaskOptions.MaxResponseBodyBytes"/>.</param>
/// <param name="BodyTruncated">Whether the body was longer and was cut.</param>
internal sealed record HttpRequestResult(int Status, IReadOnlyDictionary<string, string> Headers, string Body, bool BodyTruncated);
