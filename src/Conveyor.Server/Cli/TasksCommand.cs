using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Contracts;
using Conveyor.Backends;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor tasks</c> (list and filter, newest first, a page at a time) and <c>conveyor task ID</c> (one task
/// with its attempts, errors and every state change).</summary>
internal static class TasksCommand
{
    /// <summary>Largest page, as the API's.</summary>
    private const int MaxPage = 1000;

    private static readonly string[] Header = ["ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "CREATED", "FINISHED"];

    public static Command CreateList(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("tasks", "List tasks, newest first, filtered by state, task and queue; --cursor pages on.");
        var state = new Option<string>("--state") { Description = "Only tasks in this state: " + string.Join(", ", Enum.GetValues<TaskState>().Select(s => s.ToApiName())) + ".", HelpName = "state" };
        var task = new Option<string>("--task") { Description = "Only tasks with this name.", HelpName = "name" };
        var queue = new Option<string>("--queue") { Description = "Only tasks in this queue.", HelpName = "name" };
        var limit = new Option<int?>("--limit") { Description = $"Tasks per page: 1 to {MaxPage}. Default 20.", HelpName = "n" };
        var cursor = new Option<string>("--cursor") { Description = "Show the page after the one that printed this cursor.", HelpName = "cursor" };
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts, as GET /api/v1/tasks answers: {\"items\": [...], \"nextCursor\": ...}." };
        foreach (var option in new Option[] { state, task, queue, limit, cursor, json })
        {
            command.Options.Add(option);
        }
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var errors = new List<FieldError>();
            TaskState? stateFilter = null;
            if (parse.GetValue(state) is { } stateText)
            {
                if (TaskStates.TryParseApiName(stateText, out var parsed))
                {
                    stateFilter = parsed;
                }
                else
                {
                    errors.Add(new("state", $"'{stateText}' is not a state: {string.Join(", ", Enum.GetValues<TaskState>().Select(s => s.ToApiName()))}"));
                }
            }
            if (parse.GetValue(queue) is { } queueText && !QueueNames.IsValid(queueText))
            {
                errors.Add(new("queue", $"'{queueText}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'"));
            }
            var pageSize = parse.GetValue(limit) ?? 20;
            if (pageSize is < 1 or > MaxPage)
            {
                errors.Add(new("limit", $"{pageSize} is out of range: 1 to {MaxPage}"));
            }
            if (errors.Count > 0)
            {
                foreach (var problem in errors)
                {
                    error.WriteLine($"conveyor: {problem.Field}: {problem.Message}");
                }
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            var query = new TaskQuery
            {
                State = stateFilter,
                Task = parse.GetValue(task),
                Queue = parse.GetValue(queue),
                Cursor = parse.GetValue(cursor),
                Limit = pageSize,
            };
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                TaskPage page;
                try
                {
                    page = await services.GetRequiredService<IConveyorBackend>().Store.ListAsync(query, cancellationToken).ConfigureAwait(false);
                }
                catch (ArgumentException) when (query.Cursor is not null)
                {
                    await error.WriteLineAsync($"conveyor: cursor: '{query.Cursor}' is not a cursor that 'conveyor tasks' printed").ConfigureAwait(false);
                    return ExitCodes.InvalidInput;
                }
                var resource = new TaskPageResource(page.Items.Select(TaskResource.From).ToList(), page.NextCursor);
                output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(resource, CliJson.Options) + Environment.NewLine : Render(resource));
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    public static Command CreateShow(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("task", "Show one task: its arguments, result, error, attempts and every state change.");
        var id = new Argument<string>("id") { Description = "The task's id." };
        command.Arguments.Add(id);
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts, as GET /api/v1/tasks/{id} answers." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            if (ParseId(parse.GetValue(id), error) is not { } taskId)
            {
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                var record = await services.GetRequiredService<IConveyorBackend>().Store.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
                if (record is null)
                {
                    await error.WriteLineAsync($"conveyor: there is no task {taskId}").ConfigureAwait(false);
                    return ExitCodes.Failure;
                }
                var resource = TaskResource.From(record);
                output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(resource, CliJson.Options) + Environment.NewLine : RenderOne(resource));
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    /// <summary>The id, or null after printing what is wrong with it.</summary>
    internal static Guid? ParseId(string? text, TextWriter error)
    {
        if (Guid.TryParse(text, out var taskId))
        {
            return taskId;
        }
        error.WriteLine($"conveyor: id: '{text}' is not a task id (a UUID such as 0196a1b2-…)");
        return null;
    }

    private static string Render(TaskPageResource page)
    {
        var text = new StringBuilder();
        if (page.Items.Count == 0)
        {
            // A page may end early (a queue or task filter looks at a window of the newest tasks): older ones may match.
            text.AppendLine(page.NextCursor is { } further
                ? string.Create(CultureInfo.InvariantCulture, $"No tasks match on this page; the search stopped early. More: --cursor {further}")
                : "No tasks match.");
            return text.ToString();
        }
        var rows = new List<string[]> { Header };
        rows.AddRange(page.Items.Select(t => new[]
        {
            t.Id.ToString(), t.Task, t.Queue, t.State.ToApiName(), $"{t.Attempts}/{t.MaxAttempts}", Time(t.CreatedAt),
            t.FinishedAt is { } finished ? Time(finished) : "-",
        }));
        InfoCommand.AppendTable(text, rows, rightAligned: column => column == 4);
        if (page.NextCursor is { } next)
        {
            text.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"More: --cursor {next}");
        }
        return text.ToString();
    }

    private static string RenderOne(TaskResource t)
    {
        var text = new StringBuilder();
        void Line(string name, string? value)
        {
            if (!string.IsNullOrEmpty(value))
            {
                text.Append(CultureInfo.InvariantCulture, $"{name,-12} ").AppendLine(value);
            }
        }
        Line("Task", $"{t.Id} {t.Task}");
        Line("Queue", t.Queue + (t.Priority != 0 ? $" (priority {t.Priority})" : ""));
        Line("State", t.State.ToApiName() + (t.CancelRequested ? " (cancel requested)" : ""));
        Line("Attempts", $"{t.Attempts} of {t.MaxAttempts}");
        Line("Created", Time(t.CreatedAt));
        Line("Not before", t.NotBefore is { } notBefore ? Time(notBefore) : null);
        Line("Expires", t.ExpiresAt is { } expires ? Time(expires) : null);
        Line("Started", t.StartedAt is { } started ? Time(started) : null);
        Line("Finished", t.FinishedAt is { } finished ? Time(finished) : null);
        Line("Worker", t.WorkerId);
        Line("Key", t.IdempotencyKey);
        Line("Args", t.Args?.GetRawText());
        Line("Result", t.Result?.GetRawText());
        if (t.Error is { } error)
        {
            Line("Error", $"{error.Type}: {error.Message}");
            if (!string.IsNullOrEmpty(error.Detail))
            {
                text.AppendLine(error.Detail);
            }
        }
        if (t.Errors.Count > 0)
        {
            text.AppendLine().AppendLine("Failed attempts:");
            foreach (var failed in t.Errors)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"  {failed.Attempt,3}  {Time(failed.At)}  {failed.Error.Type}: {failed.Error.Message}");
            }
        }
        if (t.Transitions.Count > 0)
        {
            text.AppendLine().AppendLine("History:");
            foreach (var transition in t.Transitions)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"  {Time(transition.At)}  {transition.State.ToApiName()}");
            }
        }
        return text.ToString();
    }

    internal static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
