namespace Conveyor.Backends;

/// <summary>A backend's server cannot be reached (down, restarting, or not answering in time); try again later.</summary>
public sealed class BackendUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException()
        : this("unknown", "The backend is unavailable.")
    {
    }

    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException(string message)
        : this("unknown", message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException(string message, Exception? innerException)
        : this("unknown", message, innerException)
    {
    }

    /// <summary>Creates the exception for the backend named <paramref name="backend"/> (<c>rabbitmq</c>, …).</summary>
    public BackendUnavailableException(string backend, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Backend = backend;
    }

    /// <summary>Short name of the backend that is unavailable.</summary>
    public string Backend { get; }
}

/// <summary>Recognises backend outages in exceptions, for callers that answer them differently from other failures
/// (the HTTP API answers 503 with <c>Retry-After</c> instead of 500).</summary>
public static class BackendOutage
{
    /// <summary>The backend named by <see cref="IConveyorBackend.GetUnavailableBackend"/> for <paramref name="exception"/>
    /// or any exception inside it (inner exceptions, those of an <see cref="AggregateException"/>); null when none is an outage.</summary>
    public static string? Find(IConveyorBackend backend, Exception exception)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(exception);
        var pending = new Stack<Exception>();
        pending.Push(exception);
        // Bounded: a pathological chain is not walked forever.
        for (var seen = 0; pending.Count > 0 && seen < 32; seen++)
        {
            var current = pending.Pop();
            if (backend.GetUnavailableBackend(current) is { } name)
            {
                return name;
            }
            if (current is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    pending.Push(inner);
                }
            }
            else if (current.InnerException is { } inner)
            {
                pending.Push(inner);
            }
        }
        return null;
    }
}
