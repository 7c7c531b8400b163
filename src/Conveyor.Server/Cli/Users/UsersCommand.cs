using System.CommandLine;
using System.Globalization;
using System.Text;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.Extensions.Configuration;

namespace Conveyor.Server.Cli.Users;

/// <summary><c>conveyor users add|passwd|remove|list|reset-mfa</c>: the dashboard's users, stored in the database.
/// Passwords come from stdin (<c>--password-stdin</c>), <c>CONVEYOR_USER_PASSWORD</c> or a prompt, never from a flag
/// (flags show in <c>ps</c>).</summary>
internal static class UsersCommand
{
    /// <summary>The environment variable a password may be read from.</summary>
    public const string PasswordVariable = "CONVEYOR_USER_PASSWORD";

    private static readonly string[] Header = ["NAME", "ROLE", "MFA", "RECOVERY CODES", "LOCKED UNTIL", "CREATED"];

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("users", "Add, list and remove the dashboard's users; change a password; reset a user's second factor (docs/security.md).");
        command.Subcommands.Add(Add(global, output, error));
        command.Subcommands.Add(Passwd(global, output, error));
        command.Subcommands.Add(Remove(global, output, error));
        command.Subcommands.Add(List(global, output, error));
        command.Subcommands.Add(ResetMfa(global, output, error));
        return command;
    }

    private static Command Add(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("add", "Add a dashboard user with a role (read, enqueue or admin) and a password.");
        var name = new Argument<string>("name") { Description = "The sign-in name: letters, digits, '.', '_', '-', '@'." };
        var role = new Option<string>("--role") { Description = "read, enqueue (includes read) or admin. Required.", Required = true, HelpName = "role" };
        var stdin = PasswordStdin();
        command.Arguments.Add(name);
        command.Options.Add(role);
        command.Options.Add(stdin);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) =>
        {
            var userName = parse.GetValue(name)!;
            var userRole = parse.GetValue(role)!;
            if (UserNames.Validate(userName) is { } nameProblem)
            {
                error.WriteLine($"conveyor: name: {nameProblem}");
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            if (!ApiScopes.IsScope(userRole))
            {
                error.WriteLine($"conveyor: --role: '{userRole}' is not one of read, enqueue, admin");
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            return MigrateCommand.WithBackendAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
            {
                if (Store(services, error) is not { } store || ReadPassword(services, parse.GetValue(stdin), error) is not { } password)
                {
                    return ExitCodes.InvalidInput;
                }
                var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
                var added = await store.AddUserAsync(new StoredUser(userName, userRole, UserCredentials.HashPassword(password), now), cancellationToken).ConfigureAwait(false);
                await CliAudit.RecordAsync(services, "user.add", userName, added ? AuditOutcomes.Ok : AuditOutcomes.Failed, error,
                    new Dictionary<string, object?> { ["role"] = userRole }).ConfigureAwait(false);
                if (!added)
                {
                    error.WriteLine($"conveyor: there is a user '{userName}' already (change its password with 'conveyor users passwd {userName}').");
                    return ExitCodes.InvalidInput;
                }
                output.WriteLine($"Added user {userName} ({userRole}).");
                return ExitCodes.Success;
            }, cancellationToken);
        });
        return command;
    }

    private static Command Passwd(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var stdin = PasswordStdin();
        return OnUser("passwd", "Set a user's password (ends the user's sessions, and lifts a lockout).", global, error, [stdin],
            async (parse, services, store, userName, cancellationToken) =>
            {
                if (ReadPassword(services, parse.GetValue(stdin), error) is not { } password)
                {
                    return ExitCodes.InvalidInput;
                }
                var hash = UserCredentials.HashPassword(password);
                var changed = await UpdateAsync(store, userName, u => u with { PasswordHash = hash, FailedAttempts = 0, LockedUntil = null }, cancellationToken).ConfigureAwait(false);
                return await Report(services, "user.passwd", userName, changed, $"Changed the password of {userName}.", output, error).ConfigureAwait(false);
            });
    }

    private static Command ResetMfa(ConfigurationFlags global, TextWriter output, TextWriter error) =>
        OnUser("reset-mfa", "Remove a user's second factor and recovery codes; the user enrols again at the next sign-in.", global, error, [],
            async (_, services, store, userName, cancellationToken) =>
            {
                var changed = await UpdateAsync(store, userName,
                    u => u with { MfaSecret = null, MfaEnabled = false, RecoveryCodeHashes = [], LastTotpStep = null }, cancellationToken).ConfigureAwait(false);
                return await Report(services, "user.reset-mfa", userName, changed, $"Removed the second factor of {userName}.", output, error).ConfigureAwait(false);
            });

    private static Command Remove(ConfigurationFlags global, TextWriter output, TextWriter error) =>
        OnUser("remove", "Remove a dashboard user (its sessions end within Conveyor:ApiKeyRefreshInterval, 30 s).", global, error, [],
            async (_, services, store, userName, cancellationToken) =>
            {
                var removed = await store.RemoveUserAsync(userName, cancellationToken).ConfigureAwait(false);
                return await Report(services, "user.remove", userName, removed, $"Removed user {userName}.", output, error).ConfigureAwait(false);
            });

    /// <summary>A subcommand on one existing user: its name argument, the database as it is (no migration), and the user
    /// store, given to <paramref name="run"/>.</summary>
    private static Command OnUser(string verb, string description, ConfigurationFlags global, TextWriter error, Option[] options,
        Func<ParseResult, IServiceProvider, IUserStore, string, CancellationToken, Task<int>> run)
    {
        var command = new Command(verb, description);
        var name = new Argument<string>("name") { Description = "The user's name." };
        command.Arguments.Add(name);
        foreach (var option in options)
        {
            command.Options.Add(option);
        }
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error,
            services => Store(services, error) is { } store ? run(parse, services, store, parse.GetValue(name)!, cancellationToken) : Task.FromResult(ExitCodes.Failure),
            cancellationToken));
        return command;
    }

    private static Command List(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("list", "List the dashboard users: name, role, whether MFA is on, recovery codes left, lockout.");
        var json = new Option<bool>("--json") { Description = "Write JSON for scripts: [{\"name\", \"role\", \"mfa\", \"recoveryCodes\", \"lockedUntil\", \"createdAt\"}]." };
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        command.SetAction((parse, cancellationToken) => ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, async services =>
        {
            if (Store(services, error) is not { } store)
            {
                return ExitCodes.Failure;
            }
            var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
            // Never the hashes or the secret: what an operator needs to see only.
            var users = (await store.ListUsersAsync(cancellationToken).ConfigureAwait(false))
                .Select(u => new UserListing(u.Name, u.Role, u.MfaEnabled, u.RecoveryCodes.Count, u.LockedUntil > now ? u.LockedUntil : null, u.CreatedAt))
                .ToList();
            CliListing.Write(output, users, parse.GetValue(json), "No users: add one with 'conveyor users add NAME --role admin'.", Header, u =>
            [
                u.Name, u.Role, u.Mfa ? "on" : "off", u.RecoveryCodes.ToString(CultureInfo.InvariantCulture), CliListing.Time(u.LockedUntil), CliListing.Time(u.CreatedAt),
            ]);
            return ExitCodes.Success;
        }, cancellationToken));
        return command;
    }

    private static Option<bool> PasswordStdin() =>
        new("--password-stdin") { Description = $"Read the password from the first line of stdin. Else from {PasswordVariable}, else a prompt." };

    private static IUserStore? Store(IServiceProvider services, TextWriter error)
    {
        var backend = services.GetRequiredService<IConveyorBackend>();
        if (backend.Users is null)
        {
            error.WriteLine($"conveyor: the {backend.Name} backend keeps no users.");
        }
        return backend.Users;
    }

    /// <summary>The password from stdin, the environment or a prompt; null after writing why it is not acceptable.</summary>
    private static string? ReadPassword(IServiceProvider services, bool fromStdin, TextWriter error)
    {
        var configured = services.GetService<IConfiguration>()?["Conveyor:Users:MinPasswordLength"];
        var minLength = int.TryParse(configured, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) && parsed >= 8 ? parsed : 12;
        string? password;
        if (fromStdin)
        {
            password = Console.In.ReadLine();
        }
        else if (Environment.GetEnvironmentVariable(PasswordVariable) is { Length: > 0 } fromEnvironment)
        {
            password = fromEnvironment;
        }
        else if (!Console.IsInputRedirected)
        {
            password = Prompt("Password: ");
            if (password is not null && Prompt("Repeat it: ") != password)
            {
                error.WriteLine("conveyor: the two passwords differ.");
                return null;
            }
        }
        else
        {
            error.WriteLine($"conveyor: no password: pass --password-stdin and write it to stdin, or set {PasswordVariable}.");
            return null;
        }
        if (UserCredentials.PasswordProblem(password, minLength) is { } problem)
        {
            error.WriteLine($"conveyor: password: {problem} (Conveyor:Users:MinPasswordLength).");
            return null;
        }
        return password;
    }

    // Reads a line without echoing it.
    private static string? Prompt(string label)
    {
        Console.Error.Write(label);
        var text = new StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter)
            {
                Console.Error.WriteLine();
                return text.ToString();
            }
            if (key.Key == ConsoleKey.Backspace)
            {
                if (text.Length > 0)
                {
                    text.Length--;
                }
            }
            else if (!char.IsControl(key.KeyChar))
            {
                text.Append(key.KeyChar);
            }
        }
    }

    private static async Task<bool> UpdateAsync(IUserStore store, string name, Func<StoredUser, StoredUser> change, CancellationToken cancellationToken)
    {
        // Compare-and-set: a sign-in may change the user between the read and the write.
        for (var attempt = 0; attempt < 10; attempt++)
        {
            if (await store.GetUserAsync(name, cancellationToken).ConfigureAwait(false) is not { } user)
            {
                return false;
            }
            if (await store.UpdateUserAsync(change(user), cancellationToken).ConfigureAwait(false))
            {
                return true;
            }
        }
        return false;
    }

    private static async Task<int> Report(IServiceProvider services, string action, string name, bool done, string message, TextWriter output, TextWriter error)
    {
        await CliAudit.RecordAsync(services, action, name, done ? AuditOutcomes.Ok : AuditOutcomes.Failed, error).ConfigureAwait(false);
        if (!done)
        {
            error.WriteLine($"conveyor: there is no user '{name}' (see 'conveyor users list').");
            return ExitCodes.InvalidInput;
        }
        output.WriteLine(message);
        return ExitCodes.Success;
    }

    /// <summary>A row of <c>conveyor users list</c>.</summary>
    internal sealed record UserListing(string Name, string Role, bool Mfa, int RecoveryCodes, DateTimeOffset? LockedUntil, DateTimeOffset CreatedAt);
}
