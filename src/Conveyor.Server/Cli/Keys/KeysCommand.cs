using System.CommandLine;

namespace Conveyor.Server.Cli.Keys;

/// <summary><c>conveyor keys</c>: the API keys stored in the database. Each subcommand is its own class; add one with
/// <see cref="Create"/>'s list.</summary>
internal static class KeysCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("keys", "Create, list and revoke the API keys stored in the database; re-encrypt stored payloads with the current encryption key (docs/security.md).");
        command.Subcommands.Add(KeysCreateCommand.Create(global, output, error));
        command.Subcommands.Add(KeysListCommand.Create(global, output, error));
        command.Subcommands.Add(KeysRevokeCommand.Create(global, output, error));
        command.Subcommands.Add(KeysRotateDataCommand.Create(global, output, error));
        return command;
    }

    /// <summary>The backend's key store, or null after writing why there is none.</summary>
    internal static Conveyor.Backends.IApiKeyStore? Store(IServiceProvider services, TextWriter error)
    {
        var backend = services.GetRequiredService<Conveyor.Backends.IConveyorBackend>();
        if (backend.ApiKeys is null)
        {
            error.WriteLine($"conveyor: the {backend.Name} backend keeps no API keys; configure them with CONVEYOR_API_KEYS or --api-key-file.");
        }
        return backend.ApiKeys;
    }
}
