using System.Text.Json.Serialization;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>
/// The body of <c>POST /api/v1/tasks/retry</c> and <c>POST /api/v1/tasks/purge</c>: which finished tasks to act on. Read
/// by <see cref="Requests.TaskFilterReader"/>, which names every problem's field; this type only describes it.
/// </summary>
[JsonNumberHandling(JsonNumberHandling.Strict)]
public sealed record TaskFilterBody
{
    /// <summary><c>dead</c> (the default), <c>cancelled</c> or <c>expired</c>; a purge also takes <c>succeeded</c>.</summary>
    public string? State { get; init; }
    /// <summary>Only tasks with this name.</summary>
    public string? Task { get; init; }
    /// <summary>Only tasks in this queue.</summary>
    public string? Queue { get; init; }
    /// <summary>Only tasks that finished at or after this RFC 3339 time.</summary>
    public DateTimeOffset? FinishedAfter { get; init; }
    /// <summary>Only tasks that finished before this RFC 3339 time.</summary>
    public DateTimeOffset? FinishedBefore { get; init; }
    /// <summary>Act on at most this many tasks, newest first: 1 to 10,000,000. Default every match.</summary>
    public int? Limit { get; init; }
    /// <summary>Required as <c>true</c> when none of task, queue, finishedAfter or finishedBefore narrows the state: a bare
    /// request does not empty or requeue a whole state by mistake.</summary>
    public bool? All { get; init; }
}
