using System.Text.Json;

namespace Conveyor;

/// <summary>A rate limit's key in the limit store and its interval.</summary>
internal readonly record struct RateKey(string Key, TimeSpan Interval);

/// <summary>A concurrency limit's key in the limit store (with the key computed from the arguments, when keyed), its
/// limit, and the limit it comes from (<see cref="LimitRules.Limit.Scope"/>).</summary>
internal readonly record struct ConcurrencyKey(string Key, int Limit, string Scope);

/// <summary>
/// The limits in force in this process: the tasks' registrations (<see cref="TaskDefaults"/>) overridden, setting by
/// setting, by <see cref="ConveyorOptions.Limits"/>; and what each message they apply to must get before it starts.
/// </summary>
internal sealed class LimitRules
{
    /// <summary>One limit: on the tasks of one name (<c>task:{name}</c>) or of one queue (<c>queue:{name}</c>).</summary>
    /// <param name="Scope">The limit's key in the store: <c>task:{name}</c> or <c>queue:{name}</c>.</param>
    /// <param name="Rate">Its rate, or null.</param>
    /// <param name="Concurrency">Its concurrency limit, or null.</param>
    /// <param name="KeyPath">The property path of the arguments that keys the concurrency limit, or null.</param>
    /// <param name="KeyFunction">The function that keys it (code only; wins over <paramref name="KeyPath"/>), or null.</param>
    internal sealed record Limit(string Scope, RateLimit? Rate, int? Concurrency, string? KeyPath, Func<TaskMessage, string?>? KeyFunction)
    {
        /// <summary>Whether the concurrency limit is per key computed from each task.</summary>
        public bool IsKeyed => KeyFunction is not null || KeyPath is not null;

        /// <summary>The concurrency key of <paramref name="message"/>: the scope, or the scope and the task's key.</summary>
        public string ConcurrencyKeyOf(TaskMessage message)
        {
            if (!IsKeyed)
            {
                return Scope;
            }
            string? value;
            try
            {
                value = KeyFunction is not null ? KeyFunction(message) : ReadPath(message.Args, KeyPath!.Split('.'));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Arguments the key cannot be read from (or a key function that throws) share the key of the tasks
                // without one, rather than stop every batch they are in.
                value = null;
            }
            return Scope + "#" + value;
        }
    }

    private readonly Dictionary<string, Limit> _byTask;
    private readonly Dictionary<string, Limit> _byQueue;

    private LimitRules(Dictionary<string, Limit> byTask, Dictionary<string, Limit> byQueue)
    {
        _byTask = byTask;
        _byQueue = byQueue;
        All = [.. byQueue.Values.Concat(byTask.Values).OrderBy(l => l.Scope, StringComparer.Ordinal)];
    }

    /// <summary>No limit is set: the worker skips the limits stage.</summary>
    public bool IsEmpty => All.Count == 0;

    /// <summary>Every limit, by scope.</summary>
    public IReadOnlyList<Limit> All { get; }

    /// <summary>The limits of the registered tasks, then those of <paramref name="configured"/> over them (already
    /// validated by <see cref="ConveyorOptionsValidator"/>).</summary>
    public static LimitRules Build(IEnumerable<LimitRule> configured, TaskRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(configured);
        ArgumentNullException.ThrowIfNull(registry);
        var byTask = new Dictionary<string, Limit>(StringComparer.Ordinal);
        var byQueue = new Dictionary<string, Limit>(StringComparer.Ordinal);
        foreach (var task in registry.Tasks)
        {
            var d = task.Defaults;
            if (d.RateLimit is not null || d.ConcurrencyLimit is not null)
            {
                byTask[task.Name] = new Limit("task:" + task.Name, d.RateLimit is null ? null : RateLimit.Parse(d.RateLimit), d.ConcurrencyLimit,
                    d.ConcurrencyKeyPath, d.ConcurrencyKey);
            }
        }
        foreach (var rule in configured)
        {
            var (map, scope, name) = rule.Task is { } task ? (byTask, "task:", task) : (byQueue, "queue:", rule.Queue!);
            var limit = map.TryGetValue(name, out var existing) ? existing : new Limit(scope + name, null, null, null, null);
            if (rule.Rate is not null)
            {
                limit = limit with { Rate = RateLimit.Parse(rule.Rate) };
            }
            if (rule.Concurrency is not null)
            {
                limit = limit with { Concurrency = rule.Concurrency };
            }
            if (rule.ConcurrencyKey is not null)
            {
                // A path from configuration replaces the code's key, function and all.
                limit = limit with { KeyPath = rule.ConcurrencyKey, KeyFunction = null };
            }
            map[name] = limit;
        }
        return new LimitRules(byTask, byQueue);
    }

    /// <summary>Adds to <paramref name="rates"/> and <paramref name="concurrency"/> what <paramref name="message"/> must get
    /// before it starts: its queue's limits, then its task's.</summary>
    public void Match(TaskMessage message, List<RateKey> rates, List<ConcurrencyKey> concurrency)
    {
        if (_byQueue.TryGetValue(message.Queue, out var queue))
        {
            Add(queue, message, rates, concurrency);
        }
        if (_byTask.TryGetValue(message.Task, out var task))
        {
            Add(task, message, rates, concurrency);
        }
    }

    private static void Add(Limit limit, TaskMessage message, List<RateKey> rates, List<ConcurrencyKey> concurrency)
    {
        if (limit.Rate is { } rate)
        {
            rates.Add(new RateKey(limit.Scope, rate.Interval));
        }
        if (limit.Concurrency is { } most)
        {
            concurrency.Add(new ConcurrencyKey(limit.ConcurrencyKeyOf(message), most, limit.Scope));
        }
    }

    /// <summary>What is wrong with the limits of a task's registration, or null.</summary>
    public static string? CheckTaskDefaults(TaskDefaults defaults)
    {
        ArgumentNullException.ThrowIfNull(defaults);
        if (defaults.RateLimit is not null && !RateLimit.TryParse(defaults.RateLimit, out _))
        {
            return $"RateLimit '{defaults.RateLimit}' is not a rate limit: use {RateLimit.AcceptedForms}.";
        }
        if (defaults.ConcurrencyLimit is < 1)
        {
            return $"ConcurrencyLimit is {defaults.ConcurrencyLimit}: it must be at least 1.";
        }
        if (defaults.ConcurrencyLimit is null && (defaults.ConcurrencyKey is not null || defaults.ConcurrencyKeyPath is not null))
        {
            return "a concurrency key is set without a ConcurrencyLimit.";
        }
        if (defaults.ConcurrencyKeyPath is { } path && !IsValidPath(path))
        {
            return $"ConcurrencyKeyPath '{path}' is not a property path: names separated by '.', such as 'tenant' or 'target.host'.";
        }
        return null;
    }

    /// <summary>The problems of <paramref name="rules"/>, each naming its configuration key (<c>Conveyor:Limits:0:Rate</c>).</summary>
    public static IEnumerable<string> Check(IList<LimitRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < rules.Count; i++)
        {
            var key = $"Conveyor:Limits:{i}:";
            var rule = rules[i];
            if (rule is null)
            {
                yield return $"Conveyor:Limits:{i} is empty: give a Task or a Queue, and a Rate or a Concurrency.";
                continue;
            }
            if ((rule.Task is null) == (rule.Queue is null))
            {
                yield return $"Conveyor:Limits:{i} names {(rule.Task is null ? "neither a Task nor a Queue" : "both a Task and a Queue")}: give one ({key}Task, the task's name, or {key}Queue).";
            }
            else if (rule.Task is { } task && string.IsNullOrWhiteSpace(task))
            {
                yield return $"{key}Task is empty: give the task's name.";
            }
            else if (rule.Queue is { } queue && !QueueNames.IsValid(queue))
            {
                yield return $"{key}Queue '{queue}' is not a queue name: 1 to 100 letters, digits, '.', '-' or '_'.";
            }
            else if (!seen.Add((rule.Task is null ? "queue:" : "task:") + (rule.Task ?? rule.Queue)))
            {
                yield return $"Conveyor:Limits:{i} limits {(rule.Task is null ? "queue '" + rule.Queue : "task '" + rule.Task)}' again: give each task or queue one entry, with its Rate and Concurrency.";
            }
            if (rule.Rate is null && rule.Concurrency is null && rule.ConcurrencyKey is null)
            {
                yield return $"Conveyor:Limits:{i} sets no limit: give {key}Rate ({RateLimit.AcceptedForms}) or {key}Concurrency (a whole number from 1).";
            }
            if (rule.Rate is { } rate && !RateLimit.TryParse(rate, out _))
            {
                yield return $"{key}Rate is '{rate}': use {RateLimit.AcceptedForms}.";
            }
            if (rule.Concurrency is < 1)
            {
                yield return $"{key}Concurrency is {rule.Concurrency}: it must be a whole number from 1 (tasks running at once across every worker).";
            }
            if (rule.ConcurrencyKey is { } path && !IsValidPath(path))
            {
                yield return $"{key}ConcurrencyKey is '{path}': give a property path of the arguments, names separated by '.', such as 'tenant' or 'target.host'.";
            }
        }
    }

    private static bool IsValidPath(string path) =>
        !string.IsNullOrWhiteSpace(path) && path.Split('.').All(part => part.Length > 0 && part.Trim() == part);

    /// <summary>The value at <paramref name="path"/> in the JSON <paramref name="args"/> as text (a string as it is, another
    /// value as JSON), or null when absent or null. A name matches exactly, else ignoring case.</summary>
    internal static string? ReadPath(string? args, string[] path)
    {
        if (args is null)
        {
            return null;
        }
        using var document = JsonDocument.Parse(args);
        var element = document.RootElement;
        foreach (var name in path)
        {
            if (element.ValueKind != JsonValueKind.Object)
            {
                return null;
            }
            if (!element.TryGetProperty(name, out var next))
            {
                var found = false;
                foreach (var property in element.EnumerateObject())
                {
                    if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase))
                    {
                        next = property.Value;
                        found = true;
                        break;
                    }
                }
                if (!found)
                {
                    return null;
                }
            }
            element = next;
        }
        return element.ValueKind switch
        {
            JsonValueKind.String => element.GetString(),
            JsonValueKind.Null or JsonValueKind.Undefined => null,
            _ => element.GetRawText(),
        };
    }
}
