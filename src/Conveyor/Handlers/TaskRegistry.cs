using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor;

/// <summary>Defaults a task applies to messages that do not set their own.</summary>
public sealed class TaskDefaults
{
    /// <summary>Queue. Default <c>default</c>.</summary>
    public string Queue { get; set; } = QueueNames.Default;
    /// <summary>Attempts in all. Default 5.</summary>
    public int MaxAttempts { get; set; } = 5;
    /// <summary>Backoff between attempts and which exceptions are retried. Default 1 s doubling to 10 min, ±20 %, every
    /// exception retried; a <see cref="TaskRetryAttribute"/> on the handler sets it before the registration's own code runs.
    /// An enqueue's own policy (<see cref="EnqueueOptions.Retry"/>) wins over it.</summary>
    public RetryPolicy Retry { get; set; } = RetryPolicy.Default;
    /// <summary>Snoozes in a row (<see cref="SnoozeTaskException"/>) after which a task goes dead with
    /// <c>Conveyor.SnoozeLimit</c>; null for the worker's <see cref="WorkerOptions.MaxSnoozes"/> (default 100). Read by the
    /// worker that runs the task, from its own registration. 0 forbids snoozing.</summary>
    public int? MaxSnoozes { get; set; }
    /// <summary>Time limit of one attempt; null for none. Default none.</summary>
    public TimeSpan? Timeout { get; set; }
    /// <summary>Priority. Default 0.</summary>
    public int Priority { get; set; }

    /// <summary>Starts of this task allowed across every worker, evenly spaced: <c>10/s</c>, <c>10/m</c>, <c>100/h</c>
    /// (<see cref="Conveyor.RateLimit"/>); a task over it waits in its queue without spending an attempt (docs/limits.md).
    /// Default null: none.</summary>
    public string? RateLimit { get; set; }

    /// <summary>Most tasks of this name running at once across every worker (per key, with
    /// <see cref="ConcurrencyKey"/> or <see cref="ConcurrencyKeyPath"/>); a task over it waits in its queue without spending
    /// an attempt. Default null: none.</summary>
    public int? ConcurrencyLimit { get; set; }

    /// <summary>Applies <see cref="ConcurrencyLimit"/> per value of this property of the arguments: <c>tenant</c>, or a
    /// path through objects, <c>target.host</c>. Default null: all tasks of the name together.</summary>
    public string? ConcurrencyKeyPath { get; set; }

    /// <summary>Applies <see cref="ConcurrencyLimit"/> per value this function computes from the message (null: the
    /// tasks without a key, together); wins over <see cref="ConcurrencyKeyPath"/>. Runs in the worker for every task of
    /// this name it fetches: keep it quick. <see cref="ConcurrencyKeyFrom{TArgs}"/> reads the arguments for it.
    /// Default null.</summary>
    public Func<TaskMessage, string?>? ConcurrencyKey { get; set; }

    /// <summary>Sets <see cref="ConcurrencyKey"/> to <paramref name="key"/> of the arguments read as
    /// <typeparamref name="TArgs"/>: <c>t.ConcurrencyKeyFrom&lt;ReportArgs&gt;(a =&gt; a.TenantId.ToString())</c>.</summary>
    public void ConcurrencyKeyFrom<TArgs>(Func<TArgs, string?> key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ConcurrencyKey = message => System.Text.Json.JsonSerializer.Deserialize<TArgs>(message.Args ?? "null", ConveyorJson.Options) is { } args ? key(args) : null;
    }
}

/// <summary>A registered task: its name, handler and how to call it.</summary>
public sealed class TaskDescriptor
{
    private readonly Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>> _invoke;

    internal TaskDescriptor(string name, Type handlerType, Type argsType, Type? resultType, TaskDefaults defaults,
        Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>> invoke)
    {
        Name = name;
        HandlerType = handlerType;
        ArgsType = argsType;
        ResultType = resultType;
        Defaults = defaults;
        _invoke = invoke;
        _argsSchema = new Lazy<JsonElement?>(() => Conveyor.ArgsSchema.For(argsType));
    }

    /// <summary>Task name.</summary>
    public string Name { get; }
    /// <summary>Handler class.</summary>
    public Type HandlerType { get; }
    /// <summary>Arguments type.</summary>
    public Type ArgsType { get; }
    /// <summary>Result type, or null when the handler returns nothing.</summary>
    public Type? ResultType { get; }
    /// <summary>Defaults for messages of this task.</summary>
    public TaskDefaults Defaults { get; }

    private readonly Lazy<JsonElement?> _argsSchema;

    /// <summary>The JSON schema of <see cref="ArgsType"/> (<see cref="Conveyor.ArgsSchema.For"/>), or null when it takes
    /// any JSON: what a worker announces so that a server without this handler checks arguments.</summary>
    public JsonElement? ArgsSchema => _argsSchema.Value;

    /// <summary>Runs the handler in the given scope and returns its result as JSON.</summary>
    public Task<string?> InvokeAsync(IServiceProvider scope, TaskContext context, string? args, CancellationToken cancellationToken) =>
        _invoke(scope, context, args, cancellationToken);

    /// <summary>Checks that <paramref name="argsJson"/> reads as the arguments type; returns the problem, or null.</summary>
    public string? ValidateArgs(string? argsJson)
    {
        if (ArgsType == typeof(JsonElement) || ArgsType == typeof(NoArgs))
        {
            return null;
        }
        try
        {
            var value = JsonSerializer.Deserialize(argsJson ?? "null", ArgsType, ConveyorJson.Options);
            if (value is null && ArgsType.IsClass)
            {
                return $"task '{Name}' needs arguments of type {ArgsType.Name}";
            }
            return null;
        }
        catch (JsonException ex)
        {
            return $"does not match the arguments of task '{Name}' ({ArgsType.Name}): {ex.Message}";
        }
        catch (NotSupportedException ex)
        {
            return $"does not match the arguments of task '{Name}' ({ArgsType.Name}): {ex.Message}";
        }
    }
}

/// <summary>Arguments type for tasks that take none; any JSON is accepted and ignored.</summary>
public sealed record NoArgs
{
    /// <summary>The one instance.</summary>
    public static NoArgs Instance { get; } = new();
}

/// <summary>The JSON settings Conveyor uses for arguments and results: web defaults (camelCase).</summary>
public static class ConveyorJson
{
    /// <summary>Shared options.</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web);
}

/// <summary>Every task registered with <c>AddTask</c>, by name.</summary>
public sealed class TaskRegistry
{
    private readonly Dictionary<string, TaskDescriptor> _tasks = new(StringComparer.Ordinal);

    /// <summary>Registered tasks.</summary>
    public IReadOnlyCollection<TaskDescriptor> Tasks => _tasks.Values;

    /// <summary>Finds a task by name.</summary>
    public bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TaskDescriptor? descriptor) =>
        _tasks.TryGetValue(name, out descriptor);

    internal void Add(TaskDescriptor descriptor)
    {
        if (_tasks.TryGetValue(descriptor.Name, out var existing) && existing.HandlerType != descriptor.HandlerType)
        {
            throw new InvalidOperationException(
                $"Task '{descriptor.Name}' is already registered to {existing.HandlerType.Name}; cannot register {descriptor.HandlerType.Name}.");
        }
        _tasks[descriptor.Name] = descriptor;
    }

    internal static TaskDescriptor Describe<THandler>(string name, TaskDefaults defaults) where THandler : class
    {
        var handlerType = typeof(THandler);
        var problems = defaults.Retry.Validate("Retry.").Select(e => $"{e.Field}: {e.Message}").ToList();
        if (defaults.MaxAttempts is < 1 or > TaskRequestValidator.MaxAttemptsLimit)
        {
            problems.Add($"MaxAttempts: {defaults.MaxAttempts} is out of range [1, {TaskRequestValidator.MaxAttemptsLimit}]");
        }
        if (defaults.MaxSnoozes is < 0)
        {
            problems.Add($"MaxSnoozes: {defaults.MaxSnoozes} is negative: give 0 (no snoozes) or more, or null for the worker's");
        }
        if (problems.Count > 0)
        {
            throw new ArgumentException($"Task '{name}' ({handlerType.Name}) has invalid defaults: {string.Join("; ", problems)}.", nameof(defaults));
        }
        foreach (var iface in handlerType.GetInterfaces())
        {
            if (!iface.IsGenericType)
            {
                continue;
            }
            var definition = iface.GetGenericTypeDefinition();
            if (definition == typeof(ITaskHandler<>))
            {
                var argsType = iface.GetGenericArguments()[0];
                var method = typeof(TaskRegistry).GetMethod(nameof(InvokerWithoutResult), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                    .MakeGenericMethod(handlerType, argsType);
                var invoke = (Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>>)method.Invoke(null, null)!;
                return new TaskDescriptor(name, handlerType, argsType, null, defaults, invoke);
            }
            if (definition == typeof(ITaskHandler<,>))
            {
                var args = iface.GetGenericArguments();
                var method = typeof(TaskRegistry).GetMethod(nameof(InvokerWithResult), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                    .MakeGenericMethod(handlerType, args[0], args[1]);
                var invoke = (Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>>)method.Invoke(null, null)!;
                return new TaskDescriptor(name, handlerType, args[0], args[1], defaults, invoke);
            }
        }
        throw new ArgumentException($"{handlerType.Name} implements neither ITaskHandler<TArgs> nor ITaskHandler<TArgs, TResult>.", nameof(THandler));
    }

    private static TArgs ReadArgs<TArgs>(string? json)
    {
        if (typeof(TArgs) == typeof(NoArgs))
        {
            return (TArgs)(object)NoArgs.Instance;
        }
        return JsonSerializer.Deserialize<TArgs>(json ?? "null", ConveyorJson.Options)!;
    }

    private static Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>> InvokerWithoutResult<THandler, TArgs>()
        where THandler : ITaskHandler<TArgs> =>
        async (services, context, json, cancellationToken) =>
        {
            var handler = services.GetRequiredService<THandler>();
            await handler.HandleAsync(ReadArgs<TArgs>(json), context, cancellationToken).ConfigureAwait(false);
            return null;
        };

    private static Func<IServiceProvider, TaskContext, string?, CancellationToken, Task<string?>> InvokerWithResult<THandler, TArgs, TResult>()
        where THandler : ITaskHandler<TArgs, TResult> =>
        async (services, context, json, cancellationToken) =>
        {
            var handler = services.GetRequiredService<THandler>();
            var result = await handler.HandleAsync(ReadArgs<TArgs>(json), context, cancellationToken).ConfigureAwait(false);
            return JsonSerializer.Serialize(result, ConveyorJson.Options);
        };
}
