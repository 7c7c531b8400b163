using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Server.Cli.Doctor;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Npgsql;

namespace Conveyor.Server.Cli;

/// <summary><c>conveyor doctor [server flags] [--json]</c>: the security checklist of docs/security.md, each item checked
/// against the configuration <c>conveyor server</c> would run with (the same flags, environment and appsettings.json).
/// Exit code 0 when no item fails, <see cref="ExitCodes.ChecklistFailed"/> when one does.</summary>
internal static class DoctorCommand
{
    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("doctor",
            "Check the security checklist of docs/security.md against the configuration 'conveyor server' would run with: the same flags " +
            "(give them here as you would to the server), environment and appsettings.json. Prints each item as pass, warn, fail or n/a with " +
            "the reason and the setting to change; exit code 3 when an item fails. Needs no running server; the stored API keys are read " +
            $"from the backend if it answers within {StoredKeysProbe.Timeout.TotalSeconds:0} s.");
        // The server's own options, so that a command line of the server checks as it is.
        var flags = ServerCommand.AddOptions(command);
        var json = new Option<bool>("--json")
        {
            Description = "Write JSON for scripts: {\"listen\", \"backend\", \"items\": [{\"id\", \"item\", \"status\", \"detail\", \"setting\"}]}; status is pass, warn, fail, n/a or unknown.",
        };
        command.Options.Add(json);
        command.SetAction((parse, cancellationToken) =>
            RunAsync(ConveyorCommandLine.Flags(parse, global, flags), parse.GetValue(json), output, error, cancellationToken));
        return command;
    }

    /// <summary>What <c>doctor --json</c> writes.</summary>
    /// <param name="Listen">The URL the server would listen on.</param>
    /// <param name="Backend">The backend in words, without credentials.</param>
    /// <param name="Items">The checklist's items, 1 to 14.</param>
    internal sealed record Report(string Listen, string Backend, IReadOnlyList<ChecklistResult> Items);

    public static async Task<int> RunAsync(Dictionary<string, string?> flags, bool json, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(flags);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var environment = ConveyorEnvironmentVariablesProvider.ReadProcessEnvironment();
        // The server's builder, for its configuration sources only: nothing is built or started.
        var configuration = ConveyorHosts.CreateServerBuilder().Configuration;
        SecretRedactor redactor;
        ConveyorSettings settings;
        try
        {
            ConveyorConfiguration.AddSources(configuration, flags);
            redactor = SecretRedactor.From(configuration, environment);
            // A setting the server would refuse before any item applies (a value that does not convert, a bad URL): the
            // command stops as the server would, with exit code 2.
            settings = ConveyorHosts.ReadSettings(configuration);
        }
        catch (ConveyorConfigurationException ex)
        {
            // The messages name settings, never their secret values; redacted all the same when the sources could be read.
            var message = SecretRedactor.From(configuration, environment).Redact(ex.Message);
            await error.WriteLineAsync($"conveyor: {message}").ConfigureAwait(false);
            return ExitCodes.InvalidInput;
        }
        foreach (var warning in ConfigurationKeys.UnknownVariables(environment))
        {
            await error.WriteLineAsync($"conveyor: warning: {warning}").ConfigureAwait(false);
        }
        var storedKeys = await StoredKeysProbe.ReadAsync(flags, settings.Backend, redactor, cancellationToken).ConfigureAwait(false);
        var items = new SecurityChecklist(configuration, settings, storedKeys, redactor, TimeProvider.System.GetUtcNow()).Run();
        var server = settings.Server;
        var report = new Report(ListenAddress.Url(server.Host, server.Port, tls: !string.IsNullOrWhiteSpace(server.Tls.CertificateFile)), Describe(settings.Backend), items);
        var text = json ? JsonSerializer.Serialize(report, CliJson.Options) + Environment.NewLine : Render(report);
        // Only messages of other code (start-up refusals, drivers' errors) are redacted, where they are put in a detail: the
        // rest is the doctor's own text, which holds no secret and would be garbled by a password that is a common word.
        await output.WriteAsync(text).ConfigureAwait(false);
        return items.Any(i => i.Status == ChecklistResult.Name(CheckStatus.Fail)) ? ExitCodes.ChecklistFailed : ExitCodes.Success;
    }

    private static readonly string[] SummaryOrder = ["pass", "warn", "fail", "unknown", "n/a"];

    private static string Render(Report report)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"Security checklist (docs/security.md) for conveyor server on {report.Listen}, {report.Backend}:");
        text.AppendLine();
        foreach (var item in report.Items)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{item.Id,2}  {item.Status,-7}  {item.Item}: {item.Detail}");
            if (item.Setting is { } setting)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"{"",13}change: {setting}");
            }
        }
        text.AppendLine();
        var counts = report.Items.GroupBy(i => i.Status).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        text.AppendLine(string.Join(", ", SummaryOrder
            .Where(s => counts.ContainsKey(s) || s is "fail")
            .Select(s => $"{counts.GetValueOrDefault(s)} {s}")) + ".");
        return text.ToString();
    }

    /// <summary>The backend in words: engine, host and database, never a user or password.</summary>
    private static string Describe(BackendLocation location) => location switch
    {
        SqliteDatabase sqlite => $"SQLite {Path.GetFullPath(sqlite.Path)}",
        PostgresDatabase postgres => DescribePostgres(postgres),
        RedisKeyspace redis => $"Redis {RedisHost(redis.Url)}",
        RabbitMqBroker broker => $"RabbitMQ {(Uri.TryCreate(broker.Url, UriKind.Absolute, out var uri) ? uri.Host : "?")} with {Describe(broker.Store)}",
        _ => location.GetType().Name,
    };

    private static string DescribePostgres(PostgresDatabase postgres)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(postgres.ConnectionString);
            return $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database} schema {postgres.Schema ?? "conveyor"}";
        }
        catch (ArgumentException)
        {
            return "PostgreSQL";
        }
    }

    private static string RedisHost(string url)
    {
        try
        {
            return string.Join(",", Conveyor.Redis.RedisUrl.Parse(url).EndPoints.Select(e => e.ToString()));
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            return "(REDIS_URL cannot be read)";
        }
    }
}
