using System.CommandLine;
using System.Text.Json;
using Conveyor.AspNetCore.Security;

namespace Conveyor.Server.Cli.Keys;

/// <summary><c>conveyor keys create --scope S [--scope S] [--queue Q] [--name N] [--json]</c>: generates a key (32 random
/// bytes), stores its SHA-256 and prints the key once.</summary>
internal static class KeysCreateCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("create", "Generate an API key, store its hash, and print the key: once, it cannot be shown again.");
        var scope = new Option<string[]>("--scope")
        {
            Description = "What the key may do: read, enqueue or admin; repeat or comma-separate for several. Required.",
            HelpName = "scope",
            Required = true,
        };
        var queue = new Option<string[]>("--queue") { Description = "Limit the key to this queue; repeat or comma-separate for several. Default: every queue.", HelpName = "name" };
        var name = new Option<string>("--name") { Description = "A name to recognise the key by in 'conveyor keys list'.", HelpName = "text" };
        var json = new Option<bool>("--json") { Description = "Write {\"id\", \"key\", \"name\", \"scopes\", \"queues\", \"createdAt\"} as JSON." };
        command.Options.Add(scope);
        command.Options.Add(queue);
        command.Options.Add(name);
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var scopes = Split(parse.GetValue(scope));
            var queues = Split(parse.GetValue(queue));
            var keyName = parse.GetValue(name);
            var problems = NewApiKey.Problems(keyName, scopes, queues);
            if (problems.Count > 0)
            {
                foreach (var (field, message) in problems)
                {
                    error.WriteLine($"conveyor: --{(field.StartsWith("scopes", StringComparison.Ordinal) ? "scope" : field.StartsWith("queues", StringComparison.Ordinal) ? "queue" : "name")}: {message}");
                }
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return MigrateCommand.WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                if (KeysCommand.Store(services, error) is not { } store)
                {
                    return ExitCodes.Failure;
                }
                var created = NewApiKey.Create(keyName, scopes, queues, services.GetRequiredService<TimeProvider>().GetUtcNow());
                await store.AddApiKeyAsync(created.Stored, cancellationToken).ConfigureAwait(false);
                await CliAudit.RecordAsync(services, "key.create", created.Stored.Id, Conveyor.Backends.AuditOutcomes.Ok, error,
                    new Dictionary<string, object?> { ["scopes"] = created.Stored.Scopes, ["queues"] = created.Stored.Queues }).ConfigureAwait(false);
                if (parse.GetValue(json))
                {
                    output.WriteLine(JsonSerializer.Serialize(Conveyor.AspNetCore.Endpoints.CreatedApiKeyResource.From(created), CliJson.Options));
                }
                else
                {
                    output.WriteLine(created.Key);
                    error.WriteLine($"Key {created.Stored.Id} created ({string.Join(",", created.Stored.Scopes)}" +
                        $"{(created.Stored.Queues.Count > 0 ? " on " + string.Join(",", created.Stored.Queues) : "")}). " +
                        "Copy it now: only its hash is stored. Send it as 'Authorization: Bearer <key>'.");
                }
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    private static List<string> Split(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
}
