using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;
using Conveyor.Encryption;

namespace Conveyor.Server.Cli.Keys;

/// <summary><c>conveyor keys rotate-data [--dry-run] [--include-plaintext] [--batch-size N] [--json]</c>: re-encrypts the
/// stored task payloads written with an older key with the current key (<see cref="PayloadRotation"/>), so that the
/// older key can be removed from the key file. Safe while servers and workers run: every write is a compare-and-set.</summary>
internal static class KeysRotateDataCommand
{
    private const string KeySettings = "CONVEYOR_ENCRYPTION_KEY or CONVEYOR_ENCRYPTION_KEY_FILE (Conveyor:Encryption, --encryption-key-file)";

    // Progress lines at most this often: a page can take milliseconds.
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    public static Command Create(ConfigurationFlags global, TextWriter output, TextWriter error)
    {
        var command = new Command("rotate-data",
            "Re-encrypt stored task arguments, results and errors written with an older key with the current key (the first of the key " +
            "file), so the older key can then be removed. Safe while servers and workers run.");
        var dryRun = new Option<bool>("--dry-run") { Description = "Count what would be rewritten; write nothing." };
        var includePlaintext = new Option<bool>("--include-plaintext")
        {
            Description = "Also encrypt values stored in clear (written before a key was configured). Default: leave them.",
        };
        var batchSize = new Option<int?>("--batch-size")
        {
            Description = $"Tasks read and rewritten per step, 1 to {PayloadRotationOptions.MaxBatchSize}. Default 100.",
            HelpName = "n",
        };
        var json = new Option<bool>("--json") { Description = "Write the summary as JSON." };
        command.Options.Add(dryRun);
        command.Options.Add(includePlaintext);
        command.Options.Add(batchSize);
        command.Options.Add(json);
        var flags = new ConfigurationFlags();
        flags.Add(command, new Option<string>("--encryption-key-file")
        {
            Description = "The key file, one key a line as 'id:base64', the current key first [env CONVEYOR_ENCRYPTION_KEY_FILE]: values " +
                "are rewritten with the first, and the others decrypt what they wrote.",
            HelpName = "path",
        }, "Conveyor:Encryption:KeyFile");
        command.SetAction((parse, cancellationToken) =>
        {
            var size = parse.GetValue(batchSize) ?? 100;
            if (size is < 1 or > PayloadRotationOptions.MaxBatchSize)
            {
                error.WriteLine($"conveyor: --batch-size: {size.ToString(CultureInfo.InvariantCulture)} is not between 1 and {PayloadRotationOptions.MaxBatchSize}.");
                return Task.FromResult(ExitCodes.InvalidInput);
            }
            var options = new PayloadRotationOptions
            {
                DryRun = parse.GetValue(dryRun),
                IncludePlaintext = parse.GetValue(includePlaintext),
                BatchSize = size,
            };
            return ExistingBackend.RunAsync(ConveyorCommandLine.Flags(parse, global, flags), error, services => NoKeys(services, error),
                services => RunAsync(services, options, parse.GetValue(json), output, error, cancellationToken), cancellationToken);
        });
        return command;
    }

    /// <summary>Exit code 2, naming the settings, when no key is configured: checked before the database is opened.</summary>
    private static int? NoKeys(IServiceProvider services, TextWriter error)
    {
        if (services.GetService<PayloadCipher>() is not null)
        {
            return null;
        }
        error.WriteLine($"conveyor: no encryption key is configured: set {KeySettings}, the current key first and the older ones after it.");
        return ExitCodes.InvalidInput;
    }

    private static async Task<int> RunAsync(IServiceProvider services, PayloadRotationOptions options, bool json, TextWriter output, TextWriter error,
        CancellationToken cancellationToken)
    {
        var cipher = services.GetRequiredService<PayloadCipher>();
        var backend = services.GetRequiredService<IConveyorBackend>();
        if (backend.Payloads is null)
        {
            await error.WriteLineAsync($"conveyor: the {backend.Name} backend cannot rewrite stored payloads.").ConfigureAwait(false);
            return ExitCodes.Failure;
        }
        await error.WriteLineAsync($"Rewriting stored payloads with key '{cipher.Keys.Current.Id}'{(options.DryRun ? " (dry run: nothing is written)" : "")}...").ConfigureAwait(false);
        var sinceProgress = Stopwatch.StartNew();
        PayloadRotationReport report;
        try
        {
            report = await PayloadRotation.RunAsync(backend, cipher, options, r =>
            {
                if (sinceProgress.Elapsed >= ProgressInterval)
                {
                    sinceProgress.Restart();
                    error.WriteLine($"  {r.TasksScanned.ToString(CultureInfo.InvariantCulture)} tasks scanned, " +
                        $"{r.ValuesRewritten.ToString(CultureInfo.InvariantCulture)} values {(options.DryRun ? "to rewrite" : "rewritten")}");
                }
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await error.WriteLineAsync("conveyor: stopped; the steps finished are written, run it again to go on.").ConfigureAwait(false);
            return ExitCodes.Failure;
        }
        if (json)
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(new
            {
                currentKey = report.CurrentKey,
                dryRun = options.DryRun,
                tasksScanned = report.TasksScanned,
                tasksRewritten = report.TasksRewritten,
                valuesRewrittenByKey = report.RewrittenByKey,
                plaintextEncrypted = report.PlaintextEncrypted,
                plaintextLeft = report.PlaintextLeft,
                tasksSkippedChanged = report.TasksSkippedChanged,
                unknownKeys = report.UnknownKeys,
                undecryptable = report.Undecryptable,
            }, CliJson.Options)).ConfigureAwait(false);
            return ExitCodes.Success;
        }
        await output.WriteLineAsync(Summary(report, options)).ConfigureAwait(false);
        return ExitCodes.Success;
    }

    private static string Summary(PayloadRotationReport report, PayloadRotationOptions options)
    {
        static string N(long n) => n.ToString(CultureInfo.InvariantCulture);
        var verb = options.DryRun ? "to rewrite" : "rewritten";
        var lines = new List<string>
        {
            $"Current key: {report.CurrentKey}{(options.DryRun ? " (dry run: nothing written)" : "")}",
            $"Tasks scanned: {N(report.TasksScanned)}",
            $"Tasks {verb}: {N(report.TasksRewritten)}",
        };
        lines.Add(report.RewrittenByKey.Count == 0
            ? $"Values {verb} from older keys: 0"
            : $"Values {verb} from older keys: {string.Join(", ", report.RewrittenByKey.Select(k => $"{k.Key}: {N(k.Value)}"))}");
        lines.Add(options.IncludePlaintext
            ? $"Values in clear encrypted{(options.DryRun ? " (would be)" : "")}: {N(report.PlaintextEncrypted)}"
            : $"Values in clear left so: {N(report.PlaintextLeft)}{(report.PlaintextLeft > 0 ? " (--include-plaintext encrypts them)" : "")}");
        lines.Add($"Tasks skipped, changed meanwhile: {N(report.TasksSkippedChanged)}{(report.TasksSkippedChanged > 0 ? " (run again to check them)" : "")}");
        lines.Add(report.UnknownKeys.Count == 0
            ? "Unknown key ids: none"
            : $"Unknown key ids (values left as they are; add the key after the current one to rotate them): {string.Join(", ", report.UnknownKeys.Select(k => $"{k.Key}: {N(k.Value)}"))}");
        if (report.Undecryptable.Count > 0)
        {
            lines.Add($"Values that do not decrypt with their key (changed, or moved from another task): {string.Join(", ", report.Undecryptable.Select(k => $"{k.Key}: {N(k.Value)}"))}");
        }
        if (!options.DryRun && report.TasksSkippedChanged == 0 && report.UnknownKeys.Count == 0 && report.Undecryptable.Count == 0)
        {
            lines.Add($"Every stored value is now in key '{report.CurrentKey}'{(report.PlaintextLeft > 0 ? " or in clear" : "")}: the other keys can be removed from the key file.");
        }
        return string.Join(Environment.NewLine, lines);
    }
}
