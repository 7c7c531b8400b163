using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Conveyor.AspNetCore.Requests;

namespace Conveyor.Server.Cli;

/// <summary>
/// <c>conveyor retry</c> and <c>conveyor purge</c>: queue again, or delete, the finished tasks matching a filter, directly
/// through the configured database by default, or through a server's API with <c>--url</c>
/// (<c>POST /api/v1/tasks/retry</c>, <c>/purge</c>). Either way the work goes a page at a time
/// (<see cref="ConveyorOptions.BulkBatchSize"/>), never in one transaction.
/// </summary>
internal static class BulkCommand
{
    private sealed record Inputs(string? State, string? Task, string? Queue, string? FinishedAfter, string? FinishedBefore, int? Limit, bool All);

    public static Command Create(bool purge, ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var verb = purge ? "purge" : "retry";
        var command = new Command(verb, purge
            ? "Delete finished tasks (dead by default) matching a filter, with their history. Give --task, --queue or a finish time, or --all."
            : "Queue dead (or cancelled, or expired) tasks matching a filter again, with fresh attempts. Give --task, --queue or a finish time, or --all.");
        var state = new Option<string>("--state")
        {
            Description = purge ? "State to purge: dead (the default), cancelled, expired or succeeded." : "State to retry: dead (the default), cancelled or expired.",
            HelpName = "state",
        };
        var task = new Option<string>("--task") { Description = "Only tasks with this name.", HelpName = "name" };
        var queue = new Option<string>("--queue") { Description = "Only tasks in this queue.", HelpName = "name" };
        var finishedAfter = new Option<string>("--finished-after")
        {
            Description = "Only tasks that finished at or after this RFC 3339 time (2026-01-01T00:00:00Z), or this long ago (P1D, PT12H, 30m).",
            HelpName = "time",
        };
        var finishedBefore = new Option<string>("--finished-before")
        {
            Description = "Only tasks that finished before this RFC 3339 time, or longer ago than this (P7D: finished over a week ago).",
            HelpName = "time",
        };
        var limit = new Option<int?>("--limit") { Description = $"Act on at most this many tasks, newest first: 1 to {TaskFilter.MaxLimit}.", HelpName = "n" };
        var all = new Option<bool>("--all") { Description = $"Needed when no --task, --queue or finish time narrows the state: {verb} every task in it." };
        var url = new Option<string>("--url") { Description = $"{(purge ? "Purge" : "Retry")} through the server at this URL instead of the database.", HelpName = "url" };
        var apiKey = new Option<string>("--api-key-file") { Description = "A file whose first line is the API key for --url [else env CONVEYOR_API_KEY, or the first of CONVEYOR_API_KEYS]; never a flag, which 'ps' would show.", HelpName = "path" };
        var json = new Option<bool>("--json") { Description = purge ? "Write {\"purged\": n}." : "Write {\"retried\": n}." };
        foreach (var option in new Option[] { state, task, queue, finishedAfter, finishedBefore, limit, all, url, apiKey, json })
        {
            command.Options.Add(option);
        }
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var inputs = new Inputs(parse.GetValue(state), parse.GetValue(task), parse.GetValue(queue), parse.GetValue(finishedAfter),
                parse.GetValue(finishedBefore), parse.GetValue(limit), parse.GetValue(all));
            var errors = new List<FieldError>();
            var filter = BuildFilter(inputs, purge, errors);
            if (errors.Count > 0)
            {
                foreach (var problem in errors)
                {
                    error.WriteLine($"conveyor: {problem.Field}: {problem.Message}");
                }
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            var asJson = parse.GetValue(json);
            return parse.GetValue(url) is { } server
                ? OverHttpAsync(filter, inputs.All, purge, server, parse.GetValue(apiKey), asJson, output, error, cancellationToken)
                : MigrateCommand.WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
                {
                    var client = services.GetRequiredService<ITaskClient>();
                    var count = purge
                        ? await client.PurgeAsync(filter, cancellationToken).ConfigureAwait(false)
                        : await client.RetryManyAsync(filter, cancellationToken).ConfigureAwait(false);
                    await CliAudit.RecordAsync(services, purge ? "tasks.purge" : "tasks.retry-many", null, Conveyor.Backends.AuditOutcomes.Ok, error,
                        new Dictionary<string, object?> { ["count"] = count }).ConfigureAwait(false);
                    Report(count, filter, purge, asJson, output);
                    return ExitCodes.Success;
                }, cancellationToken);
        });
        return command;
    }

    /// <summary>The filter of the flags, with the same rules as the API's: each problem names its flag's field.</summary>
    private static TaskFilter BuildFilter(Inputs inputs, bool purge, List<FieldError> errors)
    {
        var filter = new TaskFilter { Task = inputs.Task, Queue = inputs.Queue, Limit = inputs.Limit };
        if (inputs.State is not null)
        {
            if (TaskStates.TryParseApiName(inputs.State, out var state))
            {
                filter = filter with { State = state };
            }
            else
            {
                errors.Add(new("state", $"'{inputs.State}' is not a state: {(purge ? "dead, cancelled, expired or succeeded" : "dead, cancelled or expired")}"));
            }
        }
        var now = DateTimeOffset.UtcNow;
        filter = filter with
        {
            FinishedAfter = Time(inputs.FinishedAfter, "finished-after", now, errors),
            FinishedBefore = Time(inputs.FinishedBefore, "finished-before", now, errors),
        };
        var reported = errors.Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
        foreach (var problem in filter.Validate(purge).Where(e => !reported.Contains(e.Field)))
        {
            errors.Add(problem with { Field = problem.Field switch { "finishedAfter" => "finished-after", "finishedBefore" => "finished-before", var f => f } });
        }
        if (!filter.IsNarrowed && !inputs.All)
        {
            errors.Add(new("all", $"give --task, --queue, --finished-after or --finished-before to choose the tasks, or --all to {(purge ? "purge" : "retry")} " +
                $"every {filter.State.ToApiName()} task"));
        }
        return filter;
    }

    /// <summary>An RFC 3339 time, or a duration before <paramref name="now"/> (ISO 8601 or as other duration flags).</summary>
    private static DateTimeOffset? Time(string? text, string field, DateTimeOffset now, List<FieldError> errors)
    {
        if (text is null)
        {
            return null;
        }
        if (ApiValues.TryParseTime(text, out var time) is null)
        {
            return time;
        }
        if ((text.StartsWith('P') && ApiValues.TryParseDuration(text, out var ago) is null) || DurationFlag.TryParse(text, out ago))
        {
            if (ago >= TimeSpan.Zero)
            {
                return now - ago;
            }
        }
        errors.Add(new(field, $"'{text}' is neither an RFC 3339 time such as 2026-01-01T00:00:00Z nor a duration ago such as P7D, PT12H or 30m"));
        return null;
    }

    private static void Report(int count, TaskFilter filter, bool purge, bool asJson, TextWriter output)
    {
        if (asJson)
        {
            output.WriteLine(purge ? $"{{\"purged\": {count}}}" : $"{{\"retried\": {count}}}");
            return;
        }
        var tasks = count == 1 ? "task" : "tasks";
        output.WriteLine(purge
            ? $"Purged {count} {filter.State.ToApiName()} {tasks}."
            : $"Queued {count} {filter.State.ToApiName()} {tasks} again with fresh attempts.");
    }

    private static async Task<int> OverHttpAsync(TaskFilter filter, bool all, bool purge, string server, string? apiKey, bool asJson,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        var body = new JsonObject { ["state"] = filter.State.ToApiName() };
        if (filter.Task is not null)
        {
            body["task"] = filter.Task;
        }
        if (filter.Queue is not null)
        {
            body["queue"] = filter.Queue;
        }
        if (filter.FinishedAfter is { } after)
        {
            body["finishedAfter"] = after.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        }
        if (filter.FinishedBefore is { } before)
        {
            body["finishedBefore"] = before.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        }
        if (filter.Limit is { } limit)
        {
            body["limit"] = limit;
        }
        if (all)
        {
            body["all"] = true;
        }
        // No client timeout: a large purge takes as long as its pages do; Ctrl+C ends it, keeping the pages done.
        var (answer, exitCode) = await ServerApiCall.PostAsync(server, purge ? "/api/v1/tasks/purge" : "/api/v1/tasks/retry", body, apiKey,
            Timeout.InfiniteTimeSpan, error, cancellationToken).ConfigureAwait(false);
        if (answer is null)
        {
            return exitCode;
        }
        var text = answer.Body;
        using var document = JsonDocument.Parse(text);
        Report(document.RootElement.GetProperty(purge ? "purged" : "retried").GetInt32(), filter, purge, asJson, output);
        return ExitCodes.Success;
    }
}
