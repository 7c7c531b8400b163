namespace Conveyor.AspNetCore.Security;

/// <summary>
/// What an API key may do. <see cref="Read"/>: every GET of the API, the event stream and <c>/metrics</c>;
/// <see cref="Enqueue"/>: <c>POST /api/v1/tasks</c>, <c>/tasks/batch</c> and <c>/workflows</c>; <see cref="Admin"/>:
/// everything, including cancel, retry, purge, pausing queues, schedules and keys. Admin includes the other two;
/// enqueue does not include read (a producer need not read results).
/// </summary>
public static class ApiScopes
{
    /// <summary>Read tasks, queues, workers, schedules, workflows, stats, events and metrics.</summary>
    public const string Read = "read";

    /// <summary>Enqueue tasks and start workflows.</summary>
    public const string Enqueue = "enqueue";

    /// <summary>Everything: cancel, retry, purge, pause and resume, schedules, keys, and what read and enqueue allow.</summary>
    public const string Admin = "admin";

    /// <summary>Every scope, in the order they are documented.</summary>
    public static readonly IReadOnlyList<string> All = [Read, Enqueue, Admin];

    /// <summary>The authentication scheme of Conveyor's API keys and dashboard sessions.</summary>
    public const string Scheme = "ConveyorApiKey";

    /// <summary>Claim holding a scope the caller has (one claim per scope).</summary>
    public const string ScopeClaim = "conveyor:scope";

    /// <summary>Claim holding a queue the caller is limited to (one claim per queue; none for every queue).</summary>
    public const string QueueClaim = "conveyor:queue";

    /// <summary>Claim holding the id of the caller's key.</summary>
    public const string KeyClaim = "conveyor:key";

    /// <summary>The name of the authorization policy that requires <paramref name="scope"/>.</summary>
    public static string Policy(string scope) => "conveyor:" + scope;

    /// <summary>Whether <paramref name="scope"/> is one of <see cref="All"/>.</summary>
    public static bool IsScope(string scope) => All.Contains(scope, StringComparer.Ordinal);
}
