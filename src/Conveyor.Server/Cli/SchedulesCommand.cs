using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Contracts;
using Conveyor.Scheduling;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor schedules</c>: the periodic schedules with their last and next fire times; <c>pause</c>,
/// <c>resume</c>, <c>trigger</c> and <c>delete</c> act on one.</summary>
internal static class SchedulesCommand
{
    private static readonly string[] Header = ["SCHEDULE", "WHEN", "TZ", "TASK", "QUEUE", "STATE", "LAST FIRE", "NEXT FIRE", "SOURCE"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("schedules", "List the periodic schedules with their last and next fire times; pause, resume, trigger or delete one.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts: the schedules as GET /api/v1/schedules answers." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
            async services =>
            {
                var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
                var all = await services.GetRequiredService<IScheduleClient>().ListAsync(cancellationToken).ConfigureAwait(false);
                var resources = all.Select(s => ScheduleResource.From(s, now)).ToList();
                output.Write(parse.GetValue(json) ? JsonSerializer.Serialize(resources, CliJson.Options) + Environment.NewLine : Render(resources, now));
                return ExitCodes.Success;
            }, cancellationToken));
        command.Subcommands.Add(Action("pause", "Hold a schedule's ticks back.", global, output, error,
            async (schedules, name, ct) => await schedules.PauseAsync(name, ct).ConfigureAwait(false) is null ? null : $"Paused schedule '{name}'."));
        command.Subcommands.Add(Action("resume", "Let a paused schedule fire again from now.", global, output, error,
            async (schedules, name, ct) => await schedules.ResumeAsync(name, ct).ConfigureAwait(false) is null ? null : $"Resumed schedule '{name}'."));
        command.Subcommands.Add(Action("trigger", "Enqueue a schedule's task now, outside its ticks; prints the task's id.", global, output, error,
            async (schedules, name, ct) => await schedules.TriggerAsync(name, ct).ConfigureAwait(false) is { } result ? result.Id.ToString() : null));
        command.Subcommands.Add(Action("delete", "Delete a schedule (the tasks it enqueued stay).", global, output, error,
            async (schedules, name, ct) => await schedules.DeleteAsync(name, ct).ConfigureAwait(false) ? $"Deleted schedule '{name}'." : null));
        return command;
    }

    private static Command Action(string verb, string description, ConfigurationFlags global, TextWriter output, TextWriter error,
        Func<IScheduleClient, string, CancellationToken, Task<string?>> act)
    {
        var command = new Command(verb, description);
        var name = new Argument<string>("name") { Description = "The schedule's name." };
        command.Arguments.Add(name);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => MigrateCommand.WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
            async services =>
            {
                var scheduleName = parse.GetValue(name)!;
                var said = await act(services.GetRequiredService<IScheduleClient>(), scheduleName, cancellationToken).ConfigureAwait(false);
                if (said is null)
                {
                    await error.WriteLineAsync($"There is no schedule named '{scheduleName}'; 'conveyor schedules' lists them.").ConfigureAwait(false);
                    return ExitCodes.Failure;
                }
                await output.WriteLineAsync(said).ConfigureAwait(false);
                return ExitCodes.Success;
            }, cancellationToken));
        return command;
    }

    private static string Render(List<ScheduleResource> schedules, DateTimeOffset now)
    {
        if (schedules.Count == 0)
        {
            return "No schedules: create one with POST /api/v1/schedules, AddSchedule in code, or Conveyor:Schedules in configuration." + Environment.NewLine;
        }
        var rows = new List<string[]> { Header };
        rows.AddRange(schedules.Select(s => new[]
        {
            s.Name, s.Cron ?? "every " + s.Every, s.TimeZone, s.Task, s.Queue, s.Paused ? "paused" : "active",
            s.LastFireAt is { } last ? $"{Time(last)} ({InfoCommand.Ago(now - last)} ago)" : "never",
            s.NextFireTimes.Count > 0 ? Time(s.NextFireTimes[0]) : "-",
            s.Source,
        }));
        var text = new StringBuilder();
        InfoCommand.AppendTable(text, rows, rightAligned: _ => false);
        return text.ToString();
    }

    private static string Time(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
