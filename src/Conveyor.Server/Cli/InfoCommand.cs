using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Contracts;
using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor info</c>: queue depths per state, task totals and live workers, like <c>rq info</c>.</summary>
internal static class InfoCommand
{
    private static readonly string[] QueueHeader = ["QUEUE", "QUEUED", "SCHEDULED", "RUNNING", "RETRYING", "SUCCEEDED", "DEAD", "CANCELLED", "EXPIRED", "PAUSED"];
    private static readonly string[] WaitingHeader = ["TASK", "QUEUE", "WAITING", "STATES"];
    private static readonly string[] WorkerHeader = ["WORKER", "STATE", "QUEUES", "RUNNING", "PROCESSED", "FAILED", "MEMORY", "UP", "LAST SEEN"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("info", "Show each queue's tasks per state, the totals, and the workers seen recently.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts: {\"queues\": [...], \"totals\": {...}, \"workers\": [...], \"waitingForHandler\": {\"tasks\": [...], \"complete\": true}}." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
            async services =>
            {
                var info = await ReadAsync(services, cancellationToken).ConfigureAwait(false);
                output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(info, CliJson.Options) + Environment.NewLine : Render(info, services.GetRequiredService<TimeProvider>().GetUtcNow()));
                return ExitCodes.Success;
            }, cancellationToken));
        return command;
    }

    /// <summary>What <c>info --json</c> writes.</summary>
    /// <param name="Queues">Each queue with its depth per state.</param>
    /// <param name="Totals">Tasks per state over all queues, by API state name.</param>
    /// <param name="Workers">Workers whose heartbeat is recent.</param>
    /// <param name="WaitingForHandler">Waiting tasks whose name no live worker declares.</param>
    /// <param name="LowerBounds">The states whose totals (and counts per queue) are lower bounds: the store stopped counting
    /// their finished tasks at <see cref="ITaskStore.FinishedCountLimit"/>.</param>
    internal sealed record Info(IReadOnlyList<QueueResource> Queues, IReadOnlyDictionary<string, long> Totals, IReadOnlyList<WorkerInfo> Workers,
        WaitingForHandlerResource WaitingForHandler, IReadOnlyList<string> LowerBounds);

    private static async Task<Info> ReadAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var backend = services.GetRequiredService<IConveyorBackend>();
        var time = services.GetRequiredService<TimeProvider>();
        var worker = services.GetRequiredService<IOptions<ConveyorOptions>>().Value.Worker;
        var queues = await backend.Store.GetQueuesAsync(cancellationToken).ConfigureAwait(false);
        var workers = await WorkerListing.ListAsync(backend.Coordination, worker, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        var totals = Enum.GetValues<TaskState>().ToDictionary(s => s.ToApiName(), s => queues.Sum(q => q.Count(s)));
        var waiting = await WaitingForHandler.ReadAsync(backend, workers, cancellationToken).ConfigureAwait(false);
        var lowerBounds = Enum.GetValues<TaskState>().Where(s => queues.Any(q => q.IsLowerBound(s))).Select(s => s.ToApiName()).ToList();
        return new Info(queues.Select(QueueResource.From).ToList(), totals, workers, waiting, lowerBounds);
    }

    private static string Render(Info info, DateTimeOffset now)
    {
        var text = new StringBuilder();
        if (info.Queues.Count == 0)
        {
            text.AppendLine("No queues yet: nothing has been enqueued.");
        }
        else
        {
            var rows = new List<string[]> { QueueHeader };
            rows.AddRange(info.Queues.Select(q => new[]
            {
                q.Name, N(q.Queued), N(q.Scheduled), N(q.Running), N(q.Retrying), AtLeast(q.Succeeded, q.LowerBounds, "succeeded"), N(q.Dead),
                AtLeast(q.Cancelled, q.LowerBounds, "cancelled"), AtLeast(q.Expired, q.LowerBounds, "expired"),
                q.Paused ? "yes" : "no",
            }));
            AppendTable(text, rows, rightAligned: column => column is > 0 and < 9);
        }
        text.AppendLine();
        var all = AtLeast(info.Totals.Values.Sum(), info.LowerBounds);
        text.Append("Tasks: ").AppendJoin(", ", info.Totals.Select(t => $"{AtLeast(t.Value, info.LowerBounds, t.Key)} {t.Key}"))
            .AppendLine(CultureInfo.InvariantCulture, $" ({all} in all)");
        if (info.LowerBounds.Count > 0)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"(+: at least; finished tasks are counted up to the newest {N(ITaskStore.FinishedCountLimit)} of them)");
        }
        text.AppendLine();
        if (info.Workers.Count == 0)
        {
            text.AppendLine("Workers: none seen recently.");
        }
        else
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"Workers: {info.Workers.Count}");
            var rows = new List<string[]> { WorkerHeader };
            rows.AddRange(info.Workers.Select(w => new[]
            {
                w.Id, w.Alive == false ? "dead" : "alive", string.Join(",", w.Queues), $"{w.Running}/{w.Concurrency}", N(w.Processed), N(w.Failed),
                $"{w.MemoryBytes / (1024 * 1024)} MB",
                Ago(now - w.StartedAt), Ago(now - w.HeartbeatAt) + " ago",
            }));
            AppendTable(text, rows, rightAligned: column => column is 3 or 4 or 5 or 6);
        }
        if (info.WaitingForHandler.Tasks.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("Waiting for a handler (no live worker declares these tasks; they wait, attempts unspent):");
            var rows = new List<string[]> { WaitingHeader };
            rows.AddRange(info.WaitingForHandler.Tasks.Select(t => new[]
            {
                t.Task, t.Queue, N(t.Count) + (info.WaitingForHandler.Complete ? "" : "+"),
                string.Join(", ", t.States.Select(s => $"{N(s.Value)} {s.Key}")),
            }));
            AppendTable(text, rows, rightAligned: column => column == 2);
        }
        return text.ToString();
    }

    internal static void AppendTable(StringBuilder text, List<string[]> rows, Func<int, bool> rightAligned)
    {
        var widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var row in rows)
        {
            var cells = row.Select((cell, c) => rightAligned(c) ? cell.PadLeft(widths[c]) : cell.PadRight(widths[c]));
            text.AppendLine(string.Join("  ", cells).TrimEnd());
        }
    }

    private static string N(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A count, with "+" when <paramref name="state"/> (or, without one, any state) is among the lower bounds.</summary>
    private static string AtLeast(long value, IReadOnlyList<string> lowerBounds, string? state = null) =>
        N(value) + ((state is null ? lowerBounds.Count > 0 : lowerBounds.Contains(state)) ? "+" : "");

    internal static string Ago(TimeSpan span) =>
        span < TimeSpan.Zero ? "0s"
        : span.TotalSeconds < 120 ? $"{(int)span.TotalSeconds}s"
        : span.TotalMinutes < 120 ? $"{(int)span.TotalMinutes}m"
        : span.TotalHours < 48 ? $"{(int)span.TotalHours}h"
        : $"{(int)span.TotalDays}d";
}
