using System.CommandLine;
using Conveyor.AspNetCore.Endpoints;

namespace Conveyor.Server.Cli.Keys;

/// <summary><c>conveyor keys list [--json]</c>: the stored keys (never the keys themselves), revoked ones included.</summary>
internal static class KeysListCommand
{
    private static readonly string[] Header = ["ID", "NAME", "SCOPES", "QUEUES", "CREATED", "LAST USED", "REVOKED"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("list", "List the stored API keys: id, name, scopes, queues, when created, last used (recorded about every 30 s) and revoked.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts, as GET /api/v1/keys answers." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
        {
            if (KeysCommand.Store(services, error) is not { } store)
            {
                return ExitCodes.Failure;
            }
            var keys = (await store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false)).Select(ApiKeyResource.From).ToList();
            CliListing.Write(output, keys, parse.GetValue(json), "No stored API keys: create one with 'conveyor keys create --scope read'.", Header, k =>
            [
                k.Id, k.Name.Length == 0 ? "-" : k.Name, string.Join(",", k.Scopes), k.Queues.Count == 0 ? "*" : string.Join(",", k.Queues),
                CliListing.Time(k.CreatedAt), CliListing.Time(k.LastUsedAt), CliListing.Time(k.RevokedAt),
            ]);
            return ExitCodes.Success;
        }, cancellationToken));
        return command;
    }
}
