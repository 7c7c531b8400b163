using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;

namespace Conveyor.Server.Cli;

/// <summary>
/// <c>conveyor enqueue</c>: stores a task directly through the configured database by default, so it works with no
/// server running; with <c>--url</c> it posts to a server's HTTP API instead (and the server's rules apply).
/// </summary>
internal static class EnqueueCommand
{
    private sealed record Inputs(string Task, string? Args, string? Queue, int? Priority, string? Delay, string? Eta, string? ExpiresAt,
        int? MaxAttempts, string? Timeout, string? IdempotencyKey, string[] Headers);

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("enqueue", "Enqueue a task, directly into the database, or through a server's API with --url.");
        var task = new Argument<string>("task") { Description = "Task name, such as conveyor.noop or http.request." };
        var args = new Option<string>("--args") { Description = "Arguments as JSON, such as '{\"url\": \"https://example.com\"}'.", HelpName = "json" };
        var queue = new Option<string>("--queue") { Description = "Queue name. Default: the task's, else 'default'.", HelpName = "name" };
        var priority = new Option<int?>("--priority") { Description = "Priority from -100 to 100; higher runs first. Default 0.", HelpName = "n" };
        var delay = new Option<string>("--delay") { Description = "Run no sooner than this from now: ISO 8601 (PT30S, PT5M) or seconds.", HelpName = "duration" };
        var eta = new Option<string>("--eta") { Description = "Run no sooner than this RFC 3339 time (2026-01-01T09:00:00Z).", HelpName = "time" };
        var expiresAt = new Option<string>("--expires-at") { Description = "Expire, unstarted, at this RFC 3339 time.", HelpName = "time" };
        var maxAttempts = new Option<int?>("--max-attempts") { Description = "Attempts in all, 1 to 1000. Default: the task's, else 5.", HelpName = "n" };
        var timeout = new Option<string>("--timeout") { Description = "Time limit of one attempt: ISO 8601 or seconds.", HelpName = "duration" };
        var idempotencyKey = new Option<string>("--idempotency-key") { Description = "Enqueue at most once per key: a second enqueue returns the first task.", HelpName = "key" };
        var headers = new Option<string[]>("--header") { Description = "A header carried with the task, name=value; repeat for several.", HelpName = "name=value" };
        var url = new Option<string>("--url") { Description = "Enqueue through the server at this URL (http://127.0.0.1:8000) instead of the database.", HelpName = "url" };
        var apiKey = new Option<string>("--api-key-file") { Description = "A file whose first line is the API key for --url [else env CONVEYOR_API_KEY, or the first of CONVEYOR_API_KEYS]; never a flag, which 'ps' would show.", HelpName = "path" };
        var json = new Option<bool>("--json") { Description = "Write the task as JSON, as GET /api/v1/tasks/{id} shows it." };
        command.Arguments.Add(task);
        foreach (var option in new Option[] { args, queue, priority, delay, eta, expiresAt, maxAttempts, timeout, idempotencyKey, headers, url, apiKey, json })
        {
            command.Options.Add(option);
        }
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var inputs = new Inputs(parse.GetValue(task)!, parse.GetValue(args), parse.GetValue(queue), parse.GetValue(priority),
                parse.GetValue(delay), parse.GetValue(eta), parse.GetValue(expiresAt), parse.GetValue(maxAttempts), parse.GetValue(timeout),
                parse.GetValue(idempotencyKey), parse.GetValue(headers) ?? []);
            var asJson = parse.GetValue(json);
            return parse.GetValue(url) is { } server
                ? EnqueueOverHttpAsync(inputs, server, parse.GetValue(apiKey), asJson, output, error, cancellationToken)
                : MigrateCommand.WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
                    services => EnqueueDirectlyAsync(inputs, services, asJson, output, error, cancellationToken), cancellationToken);
        });
        return command;
    }

    private static async Task<int> EnqueueDirectlyAsync(Inputs inputs, IServiceProvider services, bool asJson,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var errors = new List<FieldError>();
        var request = BuildRequest(inputs, errors);
        var registry = services.GetRequiredService<TaskRegistry>();
        if (errors.Count == 0)
        {
            // Unknown tasks are allowed here: a worker of the user's own app, on the same database, may handle them.
            EnqueueValidation.Validate(request, registry, services.GetServices<IEnqueueValidator>(), requireRegistered: false, "", errors);
        }
        if (errors.Count > 0)
        {
            foreach (var problem in errors)
            {
                error.WriteLine($"conveyor: {problem.Field}: {problem.Message}");
            }
            return ExitCodes.InvalidInput;
        }
        if (!registry.TryGet(request.Task, out _))
        {
            error.WriteLine($"conveyor: note: '{request.Task}' is not a built-in task; it waits for a worker that has a handler for it.");
        }
        var client = services.GetRequiredService<ITaskClient>();
        var result = await client.EnqueueAsync(request, cancellationToken).ConfigureAwait(false);
        var record = await client.GetAsync(result.Id, cancellationToken).ConfigureAwait(false);
        if (asJson && record is not null)
        {
            output.WriteLine(JsonSerializer.Serialize(TaskResource.From(record), CliJson.Options));
        }
        else
        {
            output.WriteLine(result.Created
                ? $"Enqueued {request.Task} as {result.Id} ({result.State.ToApiName()}) in queue {record?.Queue ?? request.Options?.Queue ?? QueueNames.Default}."
                : $"Idempotency key matched: task {result.Id} exists ({result.State.ToApiName()}); nothing new was enqueued.");
        }
        return ExitCodes.Success;
    }

    private static TaskRequest BuildRequest(Inputs inputs, List<FieldError> errors)
    {
        string? argsJson = null;
        if (inputs.Args is not null)
        {
            try
            {
                using var document = JsonDocument.Parse(inputs.Args);
                argsJson = document.RootElement.GetRawText();
            }
            catch (JsonException ex)
            {
                errors.Add(new("args", $"is not valid JSON: {ex.Message}"));
            }
        }
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var header in inputs.Headers)
        {
            var equals = header.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                errors.Add(new("header", $"'{header}' is not name=value"));
                continue;
            }
            headers[header[..equals]] = header[(equals + 1)..];
        }
        return new TaskRequest(inputs.Task, argsJson, new EnqueueOptions
        {
            Queue = inputs.Queue,
            Priority = inputs.Priority,
            Delay = Duration(inputs.Delay, "delay", errors),
            Eta = Time(inputs.Eta, "eta", errors),
            ExpiresAt = Time(inputs.ExpiresAt, "expiresAt", errors),
            MaxAttempts = inputs.MaxAttempts,
            Timeout = Duration(inputs.Timeout, "timeout", errors),
            IdempotencyKey = inputs.IdempotencyKey,
            Headers = headers.Count == 0 ? null : headers,
        });
    }

    private static TimeSpan? Duration(string? text, string field, List<FieldError> errors)
    {
        if (text is null)
        {
            return null;
        }
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            return TimeSpan.FromSeconds(seconds);
        }
        if (ApiValues.TryParseDuration(text, out var duration) is { } problem)
        {
            errors.Add(new(field, problem));
            return null;
        }
        return duration;
    }

    private static DateTimeOffset? Time(string? text, string field, List<FieldError> errors)
    {
        if (text is null)
        {
            return null;
        }
        if (ApiValues.TryParseTime(text, out var time) is { } problem)
        {
            errors.Add(new(field, problem));
            return null;
        }
        return time;
    }

    private static async Task<int> EnqueueOverHttpAsync(Inputs inputs, string server, string? apiKey, bool asJson,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var body = new JsonObject { ["task"] = inputs.Task };
        if (inputs.Args is not null)
        {
            try
            {
                body["args"] = JsonNode.Parse(inputs.Args);
            }
            catch (JsonException ex)
            {
                error.WriteLine($"conveyor: args: is not valid JSON: {ex.Message}");
                return ExitCodes.InvalidInput;
            }
        }
        AddIfSet(body, "queue", inputs.Queue);
        AddIfSet(body, "priority", inputs.Priority);
        AddDuration(body, "delay", inputs.Delay);
        AddIfSet(body, "eta", inputs.Eta);
        AddIfSet(body, "expiresAt", inputs.ExpiresAt);
        AddIfSet(body, "maxAttempts", inputs.MaxAttempts);
        AddDuration(body, "timeout", inputs.Timeout);
        AddIfSet(body, "idempotencyKey", inputs.IdempotencyKey);
        if (inputs.Headers.Length > 0)
        {
            var headers = new JsonObject();
            foreach (var header in inputs.Headers)
            {
                var equals = header.IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0)
                {
                    error.WriteLine($"conveyor: header: '{header}' is not name=value");
                    return ExitCodes.InvalidInput;
                }
                headers[header[..equals]] = header[(equals + 1)..];
            }
            body["headers"] = headers;
        }
        var (answer, exitCode) = await ServerApiCall.PostAsync(server, "/api/v1/tasks", body, apiKey, TimeSpan.FromSeconds(30), error, cancellationToken).ConfigureAwait(false);
        if (answer is null)
        {
            return exitCode;
        }
        var text = answer.Body;
        if (asJson)
        {
            output.WriteLine(text);
            return ExitCodes.Success;
        }
        using var document = JsonDocument.Parse(text);
        var id = document.RootElement.GetProperty("id").GetString();
        var state = document.RootElement.GetProperty("state").GetString();
        output.WriteLine(answer.Status == System.Net.HttpStatusCode.Created
            ? $"Enqueued {inputs.Task} as {id} ({state}) through {server}."
            : $"Idempotency key matched: task {id} exists ({state}); nothing new was enqueued.");
        return ExitCodes.Success;
    }

    private static void AddIfSet<T>(JsonObject body, string name, T? value)
    {
        if (value is not null)
        {
            body[name] = JsonValue.Create(value);
        }
    }

    // Plain numbers are seconds, which the API takes as JSON numbers; anything else goes as the ISO 8601 text it is.
    private static void AddDuration(JsonObject body, string name, string? text)
    {
        if (text is null)
        {
            return;
        }
        body[name] = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            ? JsonValue.Create(seconds)
            : JsonValue.Create(text);
    }
}
