using System.Text.Json;
using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Requests;

/// <summary>
/// The task names that live workers declare in their heartbeats, so that a server takes tasks for handlers that run
/// in other processes (a <c>conveyor server</c> in front of an app's own workers), with the schemas of their arguments
/// (<see cref="WorkerInfo.ArgsSchemas"/>). Read from the registry only when a request names a task this process does not
/// know, and at most once a second.
/// </summary>
internal sealed class DeclaredTasks(IConveyorBackend backend, TaskRegistry registry, IOptions<ConveyorOptions> options, TimeProvider time) : IDisposable
{
    private static readonly TimeSpan MaxAge = TimeSpan.FromSeconds(1);
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private volatile Snapshot _snapshot = new(new Dictionary<string, Declaration>(StringComparer.Ordinal), DateTimeOffset.MinValue);

    private sealed record Snapshot(Dictionary<string, Declaration> Names, DateTimeOffset ReadAt);

    /// <summary>The live workers' schemas of one task's arguments, distinct, the most recently started worker's first;
    /// <see cref="Unchecked"/> when a live worker declares it without a schema (its arguments take any JSON, its schema
    /// was too large, or it predates schemas): then that worker may take any arguments, and none are refused.</summary>
    private sealed class Declaration
    {
        public List<JsonElement> Schemas { get; } = [];
        public bool Unchecked { get; set; }
    }

    /// <summary>Drops from <paramref name="errors"/> the unknown-task errors of names a live worker declares, and makes
    /// the rest name the tasks that are known. Returns whether any error is left.</summary>
    public Task<bool> ResolveAsync(List<FieldError> errors, CancellationToken cancellationToken) =>
        ResolveAsync(errors, argsAt: null, cancellationToken);

    /// <summary>As <see cref="ResolveAsync(List{FieldError}, CancellationToken)"/>, and checks the arguments of each task
    /// a live worker declares against that worker's schema: <paramref name="argsAt"/> gives the arguments (JSON, or null
    /// for none) of the request whose fields start with the given prefix (<c>""</c>, <c>tasks[3].</c>). Arguments are
    /// accepted when any live declaring worker's schema accepts them (in a rolling update, old and new workers differ);
    /// otherwise the problems are those of the most recently started worker's schema, each naming its field
    /// (<c>args.width</c>).</summary>
    public async Task<bool> ResolveAsync(List<FieldError> errors, Func<string, string?>? argsAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (!errors.Exists(IsUnknownTask))
        {
            return errors.Count > 0;
        }
        var declared = await GetAsync(cancellationToken).ConfigureAwait(false);
        var known = registry.Tasks.Select(t => t.Name).Concat(declared.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        for (var i = errors.Count - 1; i >= 0; i--)
        {
            if (!IsUnknownTask(errors[i]))
            {
                continue;
            }
            var name = errors[i].Message[TaskRequestValidator.UnknownTaskPrefix.Length..^1];
            if (declared.TryGetValue(name, out var declaration))
            {
                var prefix = errors[i].Field[..^"task".Length];
                errors.RemoveAt(i);
                if (argsAt is not null && !declaration.Unchecked && declaration.Schemas.Count > 0)
                {
                    errors.InsertRange(i, CheckArgs(declaration, name, argsAt(prefix), prefix + "args"));
                }
            }
            else
            {
                errors[i] = errors[i] with
                {
                    Message = $"{errors[i].Message}: neither this server nor any live worker declares it; known tasks: {string.Join(", ", known)}",
                };
            }
        }
        return errors.Count > 0;
    }

    private static bool IsUnknownTask(FieldError error) =>
        error.Message.StartsWith(TaskRequestValidator.UnknownTaskPrefix, StringComparison.Ordinal) && error.Message.EndsWith('\'');

    private static List<FieldError> CheckArgs(Declaration declaration, string task, string? args, string field)
    {
        var problems = new List<FieldError>();
        foreach (var schema in declaration.Schemas)
        {
            var these = new List<FieldError>();
            if (ArgsSchema.Validate(schema, args, task, field, these))
            {
                return [];
            }
            if (problems.Count == 0)
            {
                problems = these;
            }
        }
        return problems;
    }

    private async Task<Dictionary<string, Declaration>> GetAsync(CancellationToken cancellationToken)
    {
        var snapshot = _snapshot;
        if (time.GetUtcNow() - snapshot.ReadAt < MaxAge)
        {
            return snapshot.Names;
        }
        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            snapshot = _snapshot;
            if (time.GetUtcNow() - snapshot.ReadAt < MaxAge)
            {
                return snapshot.Names;
            }
            var now = time.GetUtcNow();
            var workers = await WorkerListing.ListAsync(backend.Coordination, options.Value.Worker, now, cancellationToken).ConfigureAwait(false);
            var names = new Dictionary<string, Declaration>(StringComparer.Ordinal);
            foreach (var worker in workers.Where(w => w.Alive == true).OrderByDescending(w => w.StartedAt))
            {
                foreach (var task in worker.Tasks)
                {
                    if (!names.TryGetValue(task, out var declaration))
                    {
                        declaration = new Declaration();
                        names[task] = declaration;
                    }
                    if (worker.ArgsSchemas?.TryGetValue(task, out var schema) == true)
                    {
                        var text = schema.GetRawText();
                        if (!declaration.Schemas.Exists(s => s.GetRawText() == text))
                        {
                            declaration.Schemas.Add(schema);
                        }
                    }
                    else
                    {
                        declaration.Unchecked = true;
                    }
                }
            }
            _snapshot = new Snapshot(names, now);
            return names;
        }
        finally
        {
            _refresh.Release();
        }
    }

    public void Dispose() => _refresh.Dispose();
}
