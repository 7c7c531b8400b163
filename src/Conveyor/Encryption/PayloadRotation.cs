using Conveyor.Backends;

namespace Conveyor.Encryption;

/// <summary>What <see cref="PayloadRotation.RunAsync"/> is asked to do.</summary>
public sealed record PayloadRotationOptions
{
    /// <summary>Largest page size: the store's listing limit.</summary>
    public const int MaxBatchSize = 1000;

    /// <summary>Count what would be rewritten, write nothing.</summary>
    public bool DryRun { get; init; }

    /// <summary>Also encrypt values stored in clear (written before a key was configured); they are left alone by default.</summary>
    public bool IncludePlaintext { get; init; }

    /// <summary>Tasks read, and rewritten, per step: 1 to <see cref="MaxBatchSize"/>.</summary>
    public int BatchSize { get; init; } = 100;
}

/// <summary>What <see cref="PayloadRotation.RunAsync"/> found and did so far (handed to its progress callback after each
/// step, and returned at the end). Counts of values are of single fields: arguments, result, and each error message and
/// detail of the last error and of the attempt history.</summary>
public sealed class PayloadRotationReport
{
    /// <summary>Tasks read.</summary>
    public long TasksScanned { get; internal set; }

    /// <summary>Tasks whose values were rewritten (with <see cref="PayloadRotationOptions.DryRun"/>: would be).</summary>
    public long TasksRewritten { get; internal set; }

    /// <summary>Values re-encrypted with the current key, by the id of the key they were encrypted with.</summary>
    public SortedDictionary<string, long> RewrittenByKey { get; } = new(StringComparer.Ordinal);

    /// <summary>Values in clear that were encrypted (<see cref="PayloadRotationOptions.IncludePlaintext"/>).</summary>
    public long PlaintextEncrypted { get; internal set; }

    /// <summary>Values in clear left so (without <see cref="PayloadRotationOptions.IncludePlaintext"/>).</summary>
    public long PlaintextLeft { get; internal set; }

    /// <summary>Tasks left alone because their payload changed between the read and the write (a completion, a retry):
    /// their values were written meanwhile, with the current key; a second run checks them again.</summary>
    public long TasksSkippedChanged { get; internal set; }

    /// <summary>Values encrypted with a key id that is not configured, by key id: left as they are.</summary>
    public SortedDictionary<string, long> UnknownKeys { get; } = new(StringComparer.Ordinal);

    /// <summary>Values whose key is configured but that do not decrypt with it (changed, or moved from another task or
    /// field), by key id: left as they are.</summary>
    public SortedDictionary<string, long> Undecryptable { get; } = new(StringComparer.Ordinal);

    /// <summary>The current key: what every value is rewritten with.</summary>
    public required string CurrentKey { get; init; }

    /// <summary>Values rewritten in all.</summary>
    public long ValuesRewritten => RewrittenByKey.Values.Sum() + PlaintextEncrypted;
}

/// <summary>
/// Re-encrypts stored task payloads written with an older key with the current key (<c>conveyor keys rotate-data</c>),
/// so that the older key can then be removed. Pages through every task of the store's listing, a page per step; a
/// value tagged with a configured key other than the current one is decrypted with it and encrypted with the current
/// key (with the same field and task id as associated data), and each page's changes are written with
/// <see cref="IPayloadStore.RewritePayloadsAsync"/>, a compare-and-set: a task that completes or is retried meanwhile
/// keeps what it wrote. Safe beside running servers and workers, cancellable between steps (finished steps stay
/// written), and idempotent: a second run finds nothing to rewrite.
/// </summary>
public static class PayloadRotation
{
    /// <summary>Runs the rotation over <paramref name="backend"/> (its stored text is read, encrypted or not).</summary>
    /// <param name="backend">The backend, wrapped by <see cref="EncryptingBackend"/> or not.</param>
    /// <param name="cipher">The configured keys; the first is the one values are rewritten with.</param>
    /// <param name="options">Dry run, plaintext, batch size.</param>
    /// <param name="progress">Called after each step with the report so far; may be null.</param>
    /// <param name="cancellationToken">Stops between steps.</param>
    /// <exception cref="NotSupportedException">The backend offers no <see cref="IConveyorBackend.Payloads"/>.</exception>
    public static async Task<PayloadRotationReport> RunAsync(IConveyorBackend backend, PayloadCipher cipher, PayloadRotationOptions options,
        Action<PayloadRotationReport>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(cipher);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.BatchSize, PayloadRotationOptions.MaxBatchSize);
        // The stored text, not the decrypted one the wrapper returns.
        var stored = backend is EncryptingBackend encrypting ? encrypting.Inner : backend;
        var payloads = stored.Payloads
            ?? throw new NotSupportedException($"The {stored.Name} backend cannot rewrite stored payloads.");
        var report = new PayloadRotationReport { CurrentKey = cipher.Keys.Current.Id };
        string? cursor = null;
        do
        {
            cancellationToken.ThrowIfCancellationRequested();
            var page = await stored.Store.ListAsync(new TaskQuery { Cursor = cursor, Limit = options.BatchSize }, cancellationToken).ConfigureAwait(false);
            var rewrites = new List<PayloadRewrite>();
            var changes = new Dictionary<Guid, Tally>();
            foreach (var record in page.Items)
            {
                report.TasksScanned++;
                var tally = new Tally();
                var expected = StoredPayload.From(record);
                var replacement = Rotate(expected, record.Id, cipher, options.IncludePlaintext, tally, report);
                if (tally.Any)
                {
                    rewrites.Add(new PayloadRewrite(record.Id, expected, replacement));
                    changes[record.Id] = tally;
                }
            }
            var skipped = new HashSet<Guid>();
            if (rewrites.Count > 0 && !options.DryRun)
            {
                var outcome = await payloads.RewritePayloadsAsync(rewrites, cancellationToken).ConfigureAwait(false);
                skipped.UnionWith(outcome.Skipped);
                report.TasksSkippedChanged += skipped.Count;
            }
            foreach (var (id, tally) in changes)
            {
                if (skipped.Contains(id))
                {
                    continue;
                }
                report.TasksRewritten++;
                report.PlaintextEncrypted += tally.Plaintext;
                foreach (var (key, count) in tally.ByKey)
                {
                    report.RewrittenByKey[key] = report.RewrittenByKey.GetValueOrDefault(key) + count;
                }
            }
            progress?.Invoke(report);
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return report;
    }

    /// <summary>What one task's rewrite changes: values by old key id, and values in clear.</summary>
    private sealed class Tally
    {
        public Dictionary<string, int> ByKey { get; } = new(StringComparer.Ordinal);
        public int Plaintext { get; set; }
        public bool Any => Plaintext > 0 || ByKey.Count > 0;
    }

    private static StoredPayload Rotate(StoredPayload payload, Guid id, PayloadCipher cipher, bool includePlaintext, Tally tally, PayloadRotationReport report)
    {
        string? Value(string? value, PayloadField field) => RotateValue(value, id, field, cipher, includePlaintext, tally, report);
        TaskError? Error(TaskError? error) => error is null ? null : error with
        {
            Message = Value(error.Message, PayloadField.ErrorMessage)!,
            Detail = Value(error.Detail, PayloadField.ErrorDetail),
        };
        return new StoredPayload(Value(payload.Args, PayloadField.Args), Value(payload.Result, PayloadField.Result), Error(payload.Error),
            [.. payload.Errors.Select(e => e with { Error = Error(e.Error)! })]);
    }

    private static string? RotateValue(string? value, Guid id, PayloadField field, PayloadCipher cipher, bool includePlaintext, Tally tally,
        PayloadRotationReport report)
    {
        if (value is null)
        {
            return null;
        }
        if (!PayloadCipher.IsEncrypted(value, PayloadCipher.IsJson(field)))
        {
            if (!includePlaintext)
            {
                report.PlaintextLeft++;
                return value;
            }
            tally.Plaintext++;
            return cipher.Encrypt(value, id, field);
        }
        var keyId = PayloadCipher.KeyIdOf(value, PayloadCipher.IsJson(field));
        if (keyId == cipher.Keys.Current.Id)
        {
            return value;
        }
        if (keyId is null || cipher.Keys.Find(keyId) is null)
        {
            var unknown = keyId ?? "(no id)";
            report.UnknownKeys[unknown] = report.UnknownKeys.GetValueOrDefault(unknown) + 1;
            return value;
        }
        if (!cipher.TryDecrypt(value, id, field, out var plain, out _))
        {
            report.Undecryptable[keyId] = report.Undecryptable.GetValueOrDefault(keyId) + 1;
            return value;
        }
        tally.ByKey[keyId] = tally.ByKey.GetValueOrDefault(keyId) + 1;
        return cipher.Encrypt(plain, id, field);
    }
}
