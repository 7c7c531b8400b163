using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Contracts;
using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor cancel ID</c>, <c>conveyor pause QUEUE</c>, <c>conveyor resume QUEUE</c> and <c>conveyor workers</c>:
/// what an operator does by hand, on the configured database (which they never create).</summary>
internal static class OperatorCommands
{
    private static readonly string[] WorkerHeader = ["WORKER", "STATE", "HOST", "PID", "QUEUES", "RUNNING", "PROCESSED", "FAILED", "MEMORY", "UP", "LAST SEEN"];

    public static Command CreateCancel(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("cancel", "Cancel a task: a waiting one at once, a running one at its worker's next heartbeat (its handler's token fires).");
        var id = new Argument<string>("id") { Description = "The task's id." };
        command.Arguments.Add(id);
        var json = new Option<bool>("--json") { Description = "Write JSON: {\"id\", \"outcome\": cancelled|requested|finished, \"task\": {...}}." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            if (TasksCommand.ParseId(parse.GetValue(id), error) is not { } taskId)
            {
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                var client = services.GetRequiredService<ITaskClient>();
                var outcome = await client.CancelAsync(taskId, cancellationToken).ConfigureAwait(false);
                await CliAudit.RecordAsync(services, "task.cancel", taskId.ToString(), outcome is CancelOutcome.Cancelled or CancelOutcome.Requested ? AuditOutcomes.Ok : AuditOutcomes.Failed,
                    error, new Dictionary<string, object?> { ["result"] = outcome.ToString() }).ConfigureAwait(false);
                var record = outcome == CancelOutcome.NotFound ? null : await client.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
                if (record is null)
                {
                    await error.WriteLineAsync($"conveyor: there is no task {taskId}").ConfigureAwait(false);
                    return ExitCodes.Failure;
                }
                var name = outcome switch
                {
                    CancelOutcome.Cancelled => "cancelled",
                    CancelOutcome.Requested => "requested",
                    _ => "finished",
                };
                if (parse.GetValue(json))
                {
                    var answer = new { id = taskId, outcome = name, task = TaskResource.From(record) };
                    await output.WriteLineAsync(JsonSerializer.Serialize(answer, CliJson.Options)).ConfigureAwait(false);
                }
                else
                {
                    await output.WriteLineAsync(outcome switch
                    {
                        CancelOutcome.Cancelled => $"Cancelled task {taskId} ({record.Task}).",
                        CancelOutcome.Requested => $"Asked the worker running task {taskId} ({record.Task}) to cancel it; it stops at the worker's next heartbeat.",
                        _ => $"Task {taskId} ({record.Task}) is already {record.State.ToApiName()}: nothing to cancel.",
                    }).ConfigureAwait(false);
                }
                // Cancelling a finished task changes nothing: a script should know.
                return outcome == CancelOutcome.AlreadyFinished ? ExitCodes.Failure : ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    public static Command CreatePause(bool pause, ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command(pause ? "pause" : "resume", pause
            ? "Pause a queue: workers stop fetching from it (running tasks finish); enqueues still succeed."
            : "Resume a paused queue: workers fetch from it again.");
        var queue = new Argument<string>("queue") { Description = "The queue's name." };
        command.Arguments.Add(queue);
        var json = new Option<bool>("--json") { Description = "Write the queue as JSON, as GET /api/v1/queues lists it." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var name = parse.GetValue(queue)!;
            if (!QueueNames.IsValid(name))
            {
                error.WriteLine($"conveyor: queue: '{name}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'");
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                var backend = services.GetRequiredService<IConveyorBackend>();
                if (pause)
                {
                    await backend.Queue.PauseQueueAsync(name, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await backend.Queue.ResumeQueueAsync(name, cancellationToken).ConfigureAwait(false);
                }
                await CliAudit.RecordAsync(services, pause ? "queue.pause" : "queue.resume", name, AuditOutcomes.Ok, error).ConfigureAwait(false);
                var queues = await backend.Store.GetQueuesAsync(cancellationToken).ConfigureAwait(false);
                var stats = queues.FirstOrDefault(q => q.Name == name) ?? new QueueStats { Name = name, Paused = pause, Counts = new Dictionary<TaskState, long>() };
                var resource = QueueResource.From(stats);
                await output.WriteLineAsync(parse.GetValue(json)
                    ? JsonSerializer.Serialize(resource, CliJson.Options)
                    : $"{(pause ? "Paused" : "Resumed")} queue '{name}' ({resource.Queued} queued, {resource.Running} running).").ConfigureAwait(false);
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    public static Command CreateWorkers(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("workers", "List the workers seen recently: alive or dead, their queues, running tasks, counters and memory.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts, as GET /api/v1/workers answers." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
        {
            var backend = services.GetRequiredService<IConveyorBackend>();
            var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
            var worker = services.GetRequiredService<IOptions<ConveyorOptions>>().Value.Worker;
            var workers = await WorkerListing.ListAsync(backend.Coordination, worker, now, cancellationToken).ConfigureAwait(false);
            output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(workers, CliJson.Options) + Environment.NewLine : RenderWorkers(workers, now));
            return ExitCodes.Success;
        }, cancellationToken));
        return command;
    }

    private static string RenderWorkers(IReadOnlyList<WorkerInfo> workers, DateTimeOffset now)
    {
        if (workers.Count == 0)
        {
            return "No workers seen recently." + Environment.NewLine;
        }
        var rows = new List<string[]> { WorkerHeader };
        rows.AddRange(workers.Select(w => new[]
        {
            w.Id, w.Alive == false ? "dead" : "alive", w.Host, w.ProcessId.ToString(CultureInfo.InvariantCulture), string.Join(",", w.Queues),
            $"{w.Running}/{w.Concurrency}", w.Processed.ToString(CultureInfo.InvariantCulture), w.Failed.ToString(CultureInfo.InvariantCulture),
            $"{w.MemoryBytes / (1024 * 1024)} MB", InfoCommand.Ago(now - w.StartedAt), InfoCommand.Ago(now - w.HeartbeatAt) + " ago",
        }));
        var text = new StringBuilder();
        InfoCommand.AppendTable(text, rows, rightAligned: column => column is 3 or 5 or 6 or 7 or 8);
        foreach (var w in workers.Where(w => w.RunningTasks.Count > 0))
        {
            text.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"{w.Id} runs:");
            foreach (var running in w.RunningTasks)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"  {running.Id} {running.Task} attempt {running.Attempt}, for {InfoCommand.Ago(now - running.StartedAt)}");
            }
        }
        return text.ToString();
    }
}
