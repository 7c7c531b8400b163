using System.CommandLine;

namespace Conveyor.Server.Cli.Keys;

/// <summary><c>conveyor keys revoke ID</c>: a revoked key is refused by every server within its refresh interval (30 s).</summary>
internal static class KeysRevokeCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("revoke", "Revoke a stored API key: servers refuse it within Conveyor:ApiKeyRefreshInterval (30 s), at once through DELETE /api/v1/keys/{id}.");
        var id = new Argument<string>("id") { Description = "The key's id, as 'conveyor keys list' shows it." };
        command.Arguments.Add(id);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
        {
            if (KeysCommand.Store(services, error) is not { } store)
            {
                return ExitCodes.Failure;
            }
            var keyId = parse.GetValue(id)!;
            var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
            var revoked = await store.RevokeApiKeyAsync(keyId, now, cancellationToken).ConfigureAwait(false);
            await CliAudit.RecordAsync(services, "key.revoke", keyId, revoked ? Conveyor.Backends.AuditOutcomes.Ok : Conveyor.Backends.AuditOutcomes.Failed, error).ConfigureAwait(false);
            if (revoked)
            {
                output.WriteLine($"Revoked key {keyId}.");
                return ExitCodes.Success;
            }
            var known = (await store.ListApiKeysAsync(cancellationToken).ConfigureAwait(false)).Any(k => k.Id == keyId);
            error.WriteLine(known ? $"conveyor: key {keyId} was revoked already." : $"conveyor: there is no stored key '{keyId}' (see 'conveyor keys list').");
            return known ? ExitCodes.Success : ExitCodes.InvalidInput;
        }, cancellationToken));
        return command;
    }
}
