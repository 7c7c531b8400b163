using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>
/// The numbers a SQL backend stores in <c>tasks.state</c> (the values of <see cref="TaskState"/>), as text to compose
/// into SQL: <c>$"… WHERE state IN ({StoredStates.Due})"</c> is still a constant, so a statement built from them costs
/// nothing at run time. Never renumber: databases hold these values.
/// </summary>
public static class StoredStates
{
    /// <summary><see cref="TaskState.Scheduled"/>.</summary>
    public const string Scheduled = "0";
    /// <summary><see cref="TaskState.Queued"/>.</summary>
    public const string Queued = "1";
    /// <summary><see cref="TaskState.Running"/>.</summary>
    public const string Running = "2";
    /// <summary><see cref="TaskState.Succeeded"/>.</summary>
    public const string Succeeded = "3";
    /// <summary><see cref="TaskState.Retrying"/>.</summary>
    public const string Retrying = "4";
    /// <summary><see cref="TaskState.Dead"/>.</summary>
    public const string Dead = "5";
    /// <summary><see cref="TaskState.Cancelled"/>.</summary>
    public const string Cancelled = "6";
    /// <summary><see cref="TaskState.Expired"/>.</summary>
    public const string Expired = "7";
    /// <summary><see cref="TaskState.Pending"/>: a workflow step waiting for the steps it runs after.</summary>
    public const string Pending = "8";

    /// <summary>States that wait for a not-before time (promoted when it passes), for <c>IN (…)</c>.</summary>
    public const string Due = Scheduled + ", " + Retrying;

    /// <summary>States a task waits in without a worker, so that a cancel ends it at once, for <c>IN (…)</c>.</summary>
    public const string Waiting = Scheduled + ", " + Queued + ", " + Retrying + ", " + Pending;

    /// <summary>The states every task that succeeds passes through (queued, running, succeeded), for <c>IN (…)</c>: the
    /// indexes of the rare states leave them out, so that the happy path takes no entry in them.</summary>
    public const string EveryTasksPath = Queued + ", " + Running + ", " + Succeeded;

    /// <summary>The terminal states (<see cref="TaskStates.IsTerminal"/>), for <c>IN (…)</c>.</summary>
    public const string Terminal = Succeeded + ", " + Dead + ", " + Cancelled + ", " + Expired;

    /// <summary>States a hand retry requeues from: the terminal ones but <see cref="TaskState.Succeeded"/>, for <c>IN (…)</c>.</summary>
    public const string Retryable = Dead + ", " + Cancelled + ", " + Expired;

    /// <summary>The state a completion of this kind stores.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A kind this build does not know.</exception>
    public static TaskState AfterCompletion(CompletionKind kind) => kind.StateAfter();
}
