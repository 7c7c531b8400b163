using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Contracts;
using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor limits</c>: the rate and concurrency limits this configuration sets (<c>Conveyor:Limits</c>, with
/// the built-in tasks' own), and their use now across every worker, as <c>GET /api/v1/limits</c> gives them.</summary>
internal static class LimitsCommand
{
    private static readonly string[] Header = ["LIMIT", "RATE", "CONCURRENCY", "KEYED BY", "RUNNING", "RESERVED UNTIL"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("limits", "List the rate and concurrency limits this configuration sets, with their use now across every worker.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts: the limits as GET /api/v1/limits answers." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
            async services =>
            {
                var limits = LimitDescription.Describe(services.GetRequiredService<IOptions<ConveyorOptions>>().Value, services.GetRequiredService<TaskRegistry>());
                var resources = new List<LimitResource>();
                if (limits.Count > 0)
                {
                    var usage = await services.GetRequiredService<IConveyorBackend>().Limits.GetUsageAsync(cancellationToken).ConfigureAwait(false);
                    var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
                    resources.AddRange(limits.Select(l => LimitResource.From(l, usage, now)));
                }
                output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(resources, CliJson.Options) + Environment.NewLine : Render(resources));
                return ExitCodes.Success;
            }, cancellationToken));
        return command;
    }

    private static string Render(List<LimitResource> limits)
    {
        if (limits.Count == 0)
        {
            return "No limits: set them with Conveyor:Limits in configuration (CONVEYOR_LIMITS__0__TASK, __RATE, __CONCURRENCY) or at registration (docs/limits.md)." + Environment.NewLine;
        }
        var rows = new List<string[]> { Header };
        rows.AddRange(limits.Select(l => new[]
        {
            l.Task is not null ? "task " + l.Task : "queue " + l.Queue,
            l.Rate ?? "-",
            l.Concurrency?.ToString(CultureInfo.InvariantCulture) ?? "-",
            l.ConcurrencyKey ?? "-",
            l.Concurrency is null ? "-" : Running(l),
            l.ReservedUntil is { } until ? until.UtcDateTime.ToString("HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture) : "-",
        }));
        var text = new StringBuilder();
        InfoCommand.AppendTable(text, rows, rightAligned: _ => false);
        return text.ToString();
    }

    private static string Running(LimitResource limit)
    {
        var running = limit.Running.ToString(CultureInfo.InvariantCulture);
        if (limit.RunningByKey is not { Count: > 0 } byKey)
        {
            return running;
        }
        // The busiest keys first, at most five: enough to see which key holds the slots.
        var keys = byKey.Where(k => k.Value > 0).OrderByDescending(k => k.Value).ThenBy(k => k.Key, StringComparer.Ordinal).Take(5)
            .Select(k => $"{(k.Key.Length == 0 ? "(none)" : k.Key)}={k.Value}");
        return $"{running} ({string.Join(", ", keys)}{(byKey.Count(k => k.Value > 0) > 5 ? ", …" : "")})";
    }
}
