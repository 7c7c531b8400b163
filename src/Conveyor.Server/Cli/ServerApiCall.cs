using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conveyor.Server.Cli;

/// <summary>
/// A JSON POST to a running server's API, as every CLI command with <c>--url</c> makes it: the key from <c>--api-key-file</c> or the
/// environment, one error line when the server cannot be reached or refuses, and the exit code that goes with it.
/// </summary>
internal static class ServerApiCall
{
    /// <summary>The server's answer to a successful call.</summary>
    internal sealed record Answer(HttpStatusCode Status, string Body);

    /// <summary>Posts <paramref name="body"/> to <paramref name="path"/> on <paramref name="server"/>. Returns the answer,
    /// or null with the exit code to return after writing why to <paramref name="error"/>.</summary>
    internal static async Task<(Answer? Answer, int ExitCode)> PostAsync(string server, string path, JsonNode body, string? apiKeyFile,
        TimeSpan timeout, TextWriter error, CancellationToken cancellationToken)
    {
        string? apiKey;
        try
        {
            apiKey = apiKeyFile is not null
                ? File.ReadLines(apiKeyFile).Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith('#'))?.Split(' ', 2)[0]
                : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"conveyor: --api-key-file '{apiKeyFile}' cannot be read: {ex.Message}");
            return (null, ExitCodes.InvalidInput);
        }
        apiKey ??= Environment.GetEnvironmentVariable("CONVEYOR_API_KEY")
            ?? Environment.GetEnvironmentVariable("CONVEYOR_API_KEYS")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        using var http = new HttpClient { Timeout = timeout };
        HttpResponseMessage response;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, server.TrimEnd('/') + path)
            {
                Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
            };
            if (!string.IsNullOrEmpty(apiKey))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            }
            response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or UriFormatException or InvalidOperationException)
        {
            error.WriteLine($"conveyor: cannot reach {server}: {ex.Message}");
            return (null, ExitCodes.Failure);
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                error.WriteLine($"conveyor: the server answered {(int)response.StatusCode}: {DescribeProblem(text)}");
                return (null, (int)response.StatusCode is 400 or 413 or 422 ? ExitCodes.InvalidInput : ExitCodes.Failure);
            }
            return (new Answer(response.StatusCode, text), ExitCodes.Success);
        }
    }

    /// <summary>The problem document's detail (or title), else the text itself, cut to 500 characters.</summary>
    internal static string DescribeProblem(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            var detail = root.TryGetProperty("detail", out var d) ? d.GetString() : null;
            var title = root.TryGetProperty("title", out var t) ? t.GetString() : null;
            return detail ?? title ?? text;
        }
        catch (JsonException)
        {
            return text.Length > 500 ? text[..500] : text;
        }
    }
}
