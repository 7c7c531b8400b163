using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Endpoints;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor audit [--action A] [--actor X] [--since T] [--until T] [--limit N] [--cursor C] [--json]</c>: the audit
/// log, newest first, read from the database (filters checked as <c>GET /api/v1/audit</c> checks them).</summary>
internal static class AuditCommand
{
    private static readonly string[] Header = ["AT", "ACTOR", "KIND", "ACTION", "TARGET", "OUTCOME", "STATUS", "FROM"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("audit", "List the audit log, newest first: sign-ins and admin actions, who did them, when and from where.");
        var action = new Option<string>("--action") { Description = "Only actions starting with this text (task., queue.pause, session).", HelpName = "prefix" };
        var actor = new Option<string>("--actor") { Description = "Only this actor: a key id, loopback, cli or anonymous.", HelpName = "actor" };
        var since = new Option<string>("--since") { Description = "Only entries at or after this time (ISO 8601).", HelpName = "time" };
        var until = new Option<string>("--until") { Description = "Only entries at or before this time (ISO 8601).", HelpName = "time" };
        var limit = new Option<string>("--limit") { Description = $"Most entries: 1 to {AuditEndpoints.MaxLimit} (default 100).", HelpName = "n" };
        var cursor = new Option<string>("--cursor") { Description = "Continue after the page that printed this cursor.", HelpName = "cursor" };
        var json = new Option<bool>("--json") { Description = "Write JSON, as GET /api/v1/audit answers: {\"entries\": [...], \"nextCursor\"}." };
        foreach (var option in new Option[] { action, actor, since, until, limit, cursor, json })
        {
            command.Options.Add(option);
        }
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var values = new Dictionary<string, StringValues>(StringComparer.Ordinal);
            foreach (var (name, option) in new[] { ("action", action), ("actor", actor), ("since", since), ("until", until), ("limit", limit), ("cursor", cursor) })
            {
                if (parse.GetValue(option) is { Length: > 0 } value)
                {
                    values[name] = value;
                }
            }
            var (query, problem) = AuditEndpoints.Read(new QueryCollection(values));
            if (problem is not null)
            {
                foreach (var (field, messages) in (problem.ProblemDetails as HttpValidationProblemDetails)?.Errors ?? new Dictionary<string, string[]>())
                {
                    error.WriteLine($"conveyor: --{field}: {string.Join(" ", messages)}");
                }
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                var backend = services.GetRequiredService<Conveyor.Backends.IConveyorBackend>();
                if (backend.Audit is not { } audit)
                {
                    error.WriteLine($"conveyor: the {backend.Name} backend keeps no audit log.");
                    return ExitCodes.Failure;
                }
                var page = await audit.ListAuditAsync(query!, cancellationToken).ConfigureAwait(false);
                var resource = new AuditPageResource(page.Entries.Select(AuditEntryResource.From).ToList(), page.Next?.ToString());
                if (parse.GetValue(json))
                {
                    output.WriteLine(JsonSerializer.Serialize(resource, CliJson.Options));
                    return ExitCodes.Success;
                }
                if (resource.Entries.Count == 0)
                {
                    output.WriteLine("No audit entries match.");
                    return ExitCodes.Success;
                }
                var rows = new List<string[]> { Header };
                rows.AddRange(resource.Entries.Select(e => new[]
                {
                    e.At.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture), e.Actor, e.ActorKind, e.Action,
                    e.Target ?? "-", e.Outcome, e.Status?.ToString(CultureInfo.InvariantCulture) ?? "-", e.RemoteAddress ?? "-",
                }));
                var text = new StringBuilder();
                InfoCommand.AppendTable(text, rows, rightAligned: _ => false);
                output.Write(text.ToString());
                if (resource.NextCursor is { } next)
                {
                    output.WriteLine($"More: conveyor audit --cursor {next}");
                }
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }
}
