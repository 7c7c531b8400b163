using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Encryption;

/// <summary>
/// A backend whose payloads are encrypted at rest (<see cref="ConveyorBuilder.UseEncryption"/>): it wraps the configured
/// backend, encrypts task arguments on the way in (enqueues, workflow steps) and results and error messages on the way
/// in (completions), and decrypts them on the way out (fetches, task and workflow reads). Every other call goes straight
/// to the wrapped backend. Registered only when a key is configured, so a process without one pays nothing.
/// </summary>
/// <remarks>The seam is the backend rather than the enqueue and task middleware: workflows store their steps without
/// the enqueue pipeline, completions and store reads go through no middleware, and every reader of stored tasks (the
/// API, the dashboard, the CLI, workflow inputs) already reads through the backend.</remarks>
public sealed class EncryptingBackend : IConveyorBackend
{
    /// <summary>The header a fetched message carries when its arguments could not be decrypted, with the reason:
    /// <see cref="PayloadDecryptionMiddleware"/> then fails the attempt for good instead of running the handler.</summary>
    public const string DecryptionErrorHeader = "conveyor-payload-error";

    private readonly PayloadCipher _cipher;

    /// <summary>Wraps <paramref name="inner"/>.</summary>
    public EncryptingBackend(IConveyorBackend inner, PayloadCipher cipher)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(cipher);
        if (inner is EncryptingBackend)
        {
            throw new ArgumentException("The backend is encrypted already.", nameof(inner));
        }
        Inner = inner;
        _cipher = cipher;
        Queue = new EncryptingQueue(inner.Queue, cipher);
        Store = new DecryptingStore(inner.Store, cipher);
    }

    /// <summary><paramref name="backend"/> wrapped when <paramref name="services"/> hold a <see cref="PayloadCipher"/>
    /// (a key is configured), else itself.</summary>
    public static IConveyorBackend Wrap(IConveyorBackend backend, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(services);
        return backend is not EncryptingBackend && services.GetService<PayloadCipher>() is { } cipher ? new EncryptingBackend(backend, cipher) : backend;
    }

    /// <summary>The keys values are encrypted and decrypted with.</summary>
    public PayloadCipher Cipher => _cipher;

    /// <summary>The backend wrapped.</summary>
    public IConveyorBackend Inner { get; }

    /// <inheritdoc />
    public string Name => Inner.Name;

    /// <inheritdoc />
    public IQueueBackend Queue { get; }

    /// <inheritdoc />
    public ITaskStore Store { get; }

    /// <inheritdoc />
    public ICoordinationBackend Coordination => Inner.Coordination;

    /// <inheritdoc />
    public IScheduleStore Schedules => Inner.Schedules;

    /// <inheritdoc />
    public IUniqueKeyStore UniqueKeys => Inner.UniqueKeys;

    /// <inheritdoc />
    public INotifier Notifier => Inner.Notifier;

    /// <inheritdoc />
    public ILimitStore Limits => Inner.Limits;

    /// <inheritdoc />
    public IWorkflowStore? Workflows => Inner.Workflows is { } workflows ? new EncryptingWorkflowStore(workflows, _cipher) : null;

    /// <inheritdoc />
    public IApiKeyStore? ApiKeys => Inner.ApiKeys;

    /// <inheritdoc />
    /// <remarks>Forwarded as it is: rewrites work on the stored (encrypted) text, which the rotation encrypts itself.</remarks>
    public IPayloadStore? Payloads => Inner.Payloads;

    /// <inheritdoc />
    public IAuditLog? Audit => Inner.Audit;

    /// <inheritdoc />
    public IUserStore? Users => Inner.Users is { } users ? new EncryptingUserStore(users, _cipher) : null;

    /// <inheritdoc />
    public BackendCapabilities Capabilities => Inner.Capabilities;

    /// <inheritdoc />
    public Task MigrateAsync(CancellationToken cancellationToken) => Inner.MigrateAsync(cancellationToken);

    /// <inheritdoc />
    public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => Inner.CheckHealthAsync(cancellationToken);

    /// <inheritdoc />
    public string? GetUnavailableBackend(Exception exception) => Inner.GetUnavailableBackend(exception);

    /// <summary><paramref name="message"/> with its arguments encrypted.</summary>
    internal static TaskMessage Encrypt(TaskMessage message, PayloadCipher cipher) =>
        message.Args is null ? message : message with { Args = cipher.Encrypt(message.Args, message.Id, PayloadField.Args) };

    /// <summary><paramref name="record"/> with its arguments, result and errors decrypted; a value that cannot be decrypted
    /// (its key is not configured) is left as stored, so that a reader sees the <c>cv1.&lt;key id&gt;.…</c> text instead
    /// of an error.</summary>
    internal static TaskRecord Decrypt(TaskRecord record, PayloadCipher cipher)
    {
        var id = record.Id;
        var anyError = record.Errors.Count > 0 || record.Error is not null;
        if (!PayloadCipher.IsEncrypted(record.Args, json: true) && !PayloadCipher.IsEncrypted(record.Result, json: true) && !anyError)
        {
            return record;
        }
        cipher.TryDecrypt(record.Args, id, PayloadField.Args, out var args, out _);
        cipher.TryDecrypt(record.Result, id, PayloadField.Result, out var result, out _);
        return record with
        {
            Args = args,
            Result = result,
            Error = cipher.TryDecryptError(record.Error, id),
            Errors = record.Errors.Count == 0 ? record.Errors : [.. record.Errors.Select(e => e with { Error = cipher.TryDecryptError(e.Error, id)! })],
        };
    }

    internal static IReadOnlyList<TaskRecord> Decrypt(IReadOnlyList<TaskRecord> records, PayloadCipher cipher)
    {
        if (records.Count == 0)
        {
            return records;
        }
        var result = new TaskRecord[records.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = Decrypt(records[i], cipher);
        }
        return result;
    }

    private sealed class EncryptingQueue(IQueueBackend inner, PayloadCipher cipher) : IQueueBackend
    {
        public Task<IReadOnlyList<EnqueueResult>> EnqueueAsync(IReadOnlyList<TaskMessage> messages, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(messages);
            var encrypted = new TaskMessage[messages.Count];
            for (var i = 0; i < encrypted.Length; i++)
            {
                encrypted[i] = Encrypt(messages[i], cipher);
            }
            return inner.EnqueueAsync(encrypted, cancellationToken);
        }

        public async Task<IReadOnlyList<Lease>> FetchAsync(FetchRequest request, CancellationToken cancellationToken)
        {
            var leases = await inner.FetchAsync(request, cancellationToken).ConfigureAwait(false);
            if (leases.Count == 0)
            {
                return leases;
            }
            var decrypted = new Lease[leases.Count];
            for (var i = 0; i < decrypted.Length; i++)
            {
                decrypted[i] = Decrypt(leases[i]);
            }
            return decrypted;
        }

        private Lease Decrypt(Lease lease)
        {
            var message = lease.Message;
            var stale = message.Headers?.ContainsKey(DecryptionErrorHeader) == true;
            if (!PayloadCipher.IsEncrypted(message.Args, json: true) && !stale)
            {
                return lease;
            }
            if (cipher.TryDecrypt(message.Args, message.Id, PayloadField.Args, out var args, out var problem))
            {
                // A header left by an earlier delivery that could not be decrypted (a key configured since) goes.
                return lease with { Message = message with { Args = args, Headers = stale ? Without(message.Headers!) : message.Headers } };
            }
            var headers = new Dictionary<string, string>(message.Headers ?? new Dictionary<string, string>(), StringComparer.Ordinal)
            {
                [DecryptionErrorHeader] = problem!,
            };
            return lease with { Message = message with { Headers = headers } };
        }

        private static Dictionary<string, string> Without(IReadOnlyDictionary<string, string> headers)
        {
            var result = new Dictionary<string, string>(headers, StringComparer.Ordinal);
            result.Remove(DecryptionErrorHeader);
            return result;
        }

        public Task<IReadOnlyList<CompletionOverride>> CompleteAsync(IReadOnlyList<Completion> completions, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(completions);
            // Same leases in: the inner backend's overrides name them as the caller does.
            var encrypted = new Completion[completions.Count];
            for (var i = 0; i < encrypted.Length; i++)
            {
                var completion = completions[i];
                encrypted[i] = completion.Result is null && completion.Error is null ? completion : completion with
                {
                    Result = cipher.Encrypt(completion.Result, completion.Lease.TaskId, PayloadField.Result),
                    Error = cipher.EncryptError(completion.Error, completion.Lease.TaskId),
                };
            }
            return inner.CompleteAsync(encrypted, cancellationToken);
        }

        public Task<IReadOnlyList<LeaseRef>> StartAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken) => inner.StartAsync(leases, cancellationToken);

        public Task<LeaseExtension> ExtendLeasesAsync(IReadOnlyList<LeaseRef> leases, TimeSpan duration, CancellationToken cancellationToken) =>
            inner.ExtendLeasesAsync(leases, duration, cancellationToken);

        public Task<LeaseSweep> ReleaseAsync(IReadOnlyList<LeaseRef> leases, CancellationToken cancellationToken) => inner.ReleaseAsync(leases, cancellationToken);

        public Task<LeaseSweep> RequeueExpiredLeasesAsync(CancellationToken cancellationToken) => inner.RequeueExpiredLeasesAsync(cancellationToken);

        public Task<LeaseSweep> AbandonLeasesAsync(string workerId, CancellationToken cancellationToken) => inner.AbandonLeasesAsync(workerId, cancellationToken);

        public Task<int> PromoteDueAsync(CancellationToken cancellationToken) => inner.PromoteDueAsync(cancellationToken);

        public Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken) => inner.NextDueAsync(cancellationToken);

        public Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken) => inner.CancelAsync(taskId, cancellationToken);

        public Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken) => inner.RetryAsync(taskId, cancellationToken);

        public Task PauseQueueAsync(string queue, CancellationToken cancellationToken) => inner.PauseQueueAsync(queue, cancellationToken);

        public Task ResumeQueueAsync(string queue, CancellationToken cancellationToken) => inner.ResumeQueueAsync(queue, cancellationToken);
    }

    private sealed class DecryptingStore(ITaskStore inner, PayloadCipher cipher) : ITaskStore
    {
        public async Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken) =>
            await inner.GetAsync(taskId, cancellationToken).ConfigureAwait(false) is { } record ? Decrypt(record, cipher) : null;

        public async Task<TaskPage> ListAsync(TaskQuery query, CancellationToken cancellationToken)
        {
            var page = await inner.ListAsync(query, cancellationToken).ConfigureAwait(false);
            return page with { Items = Decrypt(page.Items, cipher) };
        }

        // The members with default bodies are forwarded too: the wrapped store's own (one round trip) must not be
        // replaced by the defaults.
        public Task<IReadOnlyDictionary<Guid, TaskState>> GetStatesAsync(IReadOnlyCollection<Guid> taskIds, CancellationToken cancellationToken) =>
            inner.GetStatesAsync(taskIds, cancellationToken);

        public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(CancellationToken cancellationToken) => inner.GetQueuesAsync(cancellationToken);

        public Task<IReadOnlyList<QueueStats>> GetQueuesAsync(int finishedCountLimit, CancellationToken cancellationToken) =>
            inner.GetQueuesAsync(finishedCountLimit, cancellationToken);

        public Task<IReadOnlyDictionary<string, DateTimeOffset>> GetOldestReadyAsync(CancellationToken cancellationToken) =>
            inner.GetOldestReadyAsync(cancellationToken);

        public Task<WaitingTaskCounts> CountWaitingByTaskAsync(CancellationToken cancellationToken) => inner.CountWaitingByTaskAsync(cancellationToken);

        public Task<int> PurgeFinishedAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
            inner.PurgeFinishedAsync(finishedBefore, maxCount, cancellationToken);

        public Task<int> DeleteAsync(IReadOnlyCollection<Guid> taskIds, TaskState state, CancellationToken cancellationToken) =>
            inner.DeleteAsync(taskIds, state, cancellationToken);
    }

    private sealed class EncryptingWorkflowStore(IWorkflowStore inner, PayloadCipher cipher) : IWorkflowStore
    {
        public Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(workflow);
            return inner.CreateWorkflowAsync(workflow with
            {
                Steps = [.. workflow.Steps.Select(s => s with { Message = Encrypt(s.Message, cipher) })],
            }, cancellationToken);
        }

        public async Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken) =>
            Decrypt(await inner.GetWorkflowTasksAsync(workflowId, cancellationToken).ConfigureAwait(false), cipher);

        public Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken) => inner.GetWorkflowAsync(workflowId, cancellationToken);

        public Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken) => inner.GetWorkflowSummaryAsync(workflowId, cancellationToken);

        public Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken) => inner.ListWorkflowsAsync(query, cancellationToken);

        public Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken) => inner.CancelWorkflowAsync(workflowId, cancellationToken);

        public Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken) => inner.RetryWorkflowAsync(workflowId, cancellationToken);

        public Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken) =>
            inner.PurgeFinishedWorkflowsAsync(finishedBefore, maxCount, cancellationToken);
    }

    /// <summary>Encrypts users' TOTP secrets on the way in and decrypts them on the way out; every write encrypts with
    /// the current key, so a sign-in (which records the code's time step) moves a user's secret to the current key. A
    /// secret that cannot be decrypted (its key removed) is returned as stored, and no code matches it.</summary>
    private sealed class EncryptingUserStore(IUserStore inner, PayloadCipher cipher) : IUserStore
    {
        public Task<bool> AddUserAsync(StoredUser user, CancellationToken cancellationToken) => inner.AddUserAsync(Encrypt(user), cancellationToken);

        public async Task<StoredUser?> GetUserAsync(string name, CancellationToken cancellationToken) =>
            Decrypt(await inner.GetUserAsync(name, cancellationToken).ConfigureAwait(false));

        public async Task<IReadOnlyList<StoredUser>> ListUsersAsync(CancellationToken cancellationToken) =>
            [.. (await inner.ListUsersAsync(cancellationToken).ConfigureAwait(false)).Select(u => Decrypt(u)!)];

        public Task<bool> UpdateUserAsync(StoredUser user, CancellationToken cancellationToken) => inner.UpdateUserAsync(Encrypt(user), cancellationToken);

        public Task<bool> RemoveUserAsync(string name, CancellationToken cancellationToken) => inner.RemoveUserAsync(name, cancellationToken);

        private StoredUser Encrypt(StoredUser user)
        {
            ArgumentNullException.ThrowIfNull(user);
            return user.MfaSecret is null || PayloadCipher.IsEncrypted(user.MfaSecret, json: false)
                ? user
                : user with { MfaSecret = cipher.Encrypt(user.MfaSecret, PayloadCipher.UserId(user.Name), PayloadField.MfaSecret) };
        }

        private StoredUser? Decrypt(StoredUser? user)
        {
            if (user?.MfaSecret is null)
            {
                return user;
            }
            cipher.TryDecrypt(user.MfaSecret, PayloadCipher.UserId(user.Name), PayloadField.MfaSecret, out var secret, out _);
            return user with { MfaSecret = secret };
        }
    }
}
