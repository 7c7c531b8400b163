using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Tasks;

/// <summary>
/// <c>http.request</c>: calls a URL on an allowed host and records status, headers and body. A 5xx, 408 or 429
/// answer, a timeout or a connection error fails the attempt, to be retried with backoff; any other 4xx fails the
/// task permanently (dead), as does a URL that is not allowed. Redirects are not followed (a redirect could lead
/// off the allow-list): a 3xx answer succeeds with its status and Location header in the result.
/// </summary>
internal sealed class HttpRequestTask(IHttpClientFactory clients, IOptions<HttpTaskOptions> options, HttpDestinationGuard guard)
    : ITaskHandler<HttpRequestArgs, HttpRequestResult>
{
    public const string Name = "http.request";
    public const string ClientName = "conveyor.http.request";

    public async Task<HttpRequestResult> HandleAsync(HttpRequestArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        var settings = options.Value;
        var timeoutProblem = HttpTargetPolicy.CheckTimeout(args.TimeoutSeconds, settings, out var timeout);
        var problem = HttpTargetPolicy.CheckUrl(args.Url, settings.AllowedHosts, out var uri)
            ?? guard.CheckLiteralHost(uri!)
            ?? HttpTargetPolicy.CheckMethod(args.Method)
            ?? HttpTargetPolicy.CheckHeaders(args.Headers)?.Problem
            ?? timeoutProblem;
        if (problem is not null)
        {
            throw new PermanentTaskException($"http.request refused: {problem}");
        }
        var method = new HttpMethod(args.Method.ToUpperInvariant());
        using var request = new HttpRequestMessage(method, uri);
        request.Content = BuildContent(args.Body);
        foreach (var (name, value) in args.Headers ?? new Dictionary<string, string>())
        {
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                request.Content ??= new ByteArrayContent([]);
                request.Content.Headers.Remove(name);
                if (!request.Content.Headers.TryAddWithoutValidation(name, value))
                {
                    throw new PermanentTaskException($"http.request refused: header '{name}' cannot be sent");
                }
            }
        }
        // Errors and logs name the origin only: a path or query may carry a token.
        var shown = HttpTargetPolicy.Redact(uri!);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            using var response = await clients.CreateClient(ClientName)
                .SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            var (body, truncated) = await ReadBodyAsync(response.Content, settings.MaxResponseBodyBytes, deadline.Token).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            if (status >= 500 || response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests)
            {
                throw new HttpRequestException($"{method} {shown} answered {status} {response.ReasonPhrase}: {Excerpt(body)}", null, response.StatusCode);
            }
            if (status >= 400)
            {
                throw new PermanentTaskException($"{method} {shown} answered {status} {response.ReasonPhrase}, which a retry would not change: {Excerpt(body)}");
            }
            return new HttpRequestResult(status, CollectHeaders(response), body, truncated);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"{method} {shown} did not answer within {timeout.TotalSeconds} s.");
        }
        catch (HttpRequestException ex) when (ex.InnerException is HttpDestinationRefusedException refused)
        {
            throw new PermanentTaskException($"http.request refused: {refused.Message}");
        }
    }

    private static StringContent? BuildContent(JsonElement? body) => body switch
    {
        null or { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } => null,
        { ValueKind: JsonValueKind.String } text => new StringContent(text.GetString()!, Encoding.UTF8, "text/plain"),
        { } json => new StringContent(json.GetRawText(), Encoding.UTF8, "application/json"),
    };

    private static async Task<(string Body, bool Truncated)> ReadBodyAsync(HttpContent content, int maxBytes, CancellationToken cancellationToken)
    {
        var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            var buffer = new ArrayBufferWriter<byte>(Math.Min(maxBytes + 1, 16 * 1024));
            // Read one byte past the limit to know whether anything was cut, and no further.
            while (buffer.WrittenCount <= maxBytes)
            {
                var read = await stream.ReadAsync(buffer.GetMemory(Math.Min(8192, maxBytes + 1 - buffer.WrittenCount)), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }
                buffer.Advance(read);
            }
            var truncated = buffer.WrittenCount > maxBytes;
            var bytes = buffer.WrittenSpan[..Math.Min(buffer.WrittenCount, maxBytes)];
            return (Encoding.UTF8.GetString(bytes), truncated);
        }
    }

    private static Dictionary<string, string> CollectHeaders(HttpResponseMessage response)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            headers[name] = string.Join(", ", values);
        }
        return headers;
    }

    private static string Excerpt(string body) => body.Length <= 200 ? body : body[..200] + "…";
}

/// <summary>Refuses <c>http.request</c> tasks at enqueue time when they could never run: a URL off the allow-list,
/// an unknown method, a timeout out of range.</summary>
internal sealed class HttpRequestEnqueueValidator(IOptions<HttpTaskOptions> options, HttpDestinationGuard guard) : IEnqueueValidator
{
    public void Validate(TaskRequest request, string prefix, List<FieldError> errors)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(errors);
        if (request.Task != HttpRequestTask.Name || request.ArgsJson is null)
        {
            return;
        }
        HttpRequestArgs? args;
        try
        {
            args = JsonSerializer.Deserialize<HttpRequestArgs>(request.ArgsJson, ConveyorJson.Options);
        }
        catch (JsonException)
        {
            return; // The core's argument check reports it.
        }
        if (args is null)
        {
            return;
        }
        var settings = options.Value;
        if ((HttpTargetPolicy.CheckUrl(args.Url, settings.AllowedHosts, out var uri) ?? guard.CheckLiteralHost(uri!)) is { } url)
        {
            errors.Add(new(prefix + "args.url", url));
        }
        if (HttpTargetPolicy.CheckHeaders(args.Headers) is { } header)
        {
            errors.Add(new(prefix + "args.headers." + header.Name, header.Problem));
        }
        if (HttpTargetPolicy.CheckMethod(args.Method) is { } method)
        {
            errors.Add(new(prefix + "args.method", method));
        }
        if (HttpTargetPolicy.CheckTimeout(args.TimeoutSeconds, settings, out _) is { } timeout)
        {
            errors.Add(new(prefix + "args.timeoutSeconds", timeout));
        }
    }
}

/// <summary>Registration of <c>http.request</c>.</summary>
internal static class HttpRequestTaskExtensions
{
    public static ConveyorBuilder AddHttpRequestTask(this ConveyorBuilder builder, IConfiguration section)
    {
        builder.Services.AddOptions<HttpTaskOptions>().Bind(section);
        builder.Services.AddSingleton<IEnqueueValidator, HttpRequestEnqueueValidator>();
        builder.Services.AddSingleton(sp => new HttpDestinationGuard(sp.GetRequiredService<IOptions<HttpTaskOptions>>().Value));
        builder.Services.AddHttpClient(HttpRequestTask.ClientName)
            // The task's own deadline applies; HttpClient's 100 s default would cut longer allowed timeouts.
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
            {
                ConnectCallback = sp.GetRequiredService<HttpDestinationGuard>().ConnectAsync,
                AllowAutoRedirect = false,
                UseCookies = false,
                AutomaticDecompression = DecompressionMethods.All,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            });
        return builder.AddTask<HttpRequestTask>(HttpRequestTask.Name);
    }
}
