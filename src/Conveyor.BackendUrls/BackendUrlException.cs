namespace Conveyor.Backends;

/// <summary>A backend URL that cannot work. The message says what to change and never repeats more of the URL than its
/// scheme, which is all of it that is sure to hold no password.</summary>
public sealed class BackendUrlException : Exception
{
    /// <summary>An exception without a message.</summary>
    public BackendUrlException() { }

    /// <summary>An exception saying what to change.</summary>
    public BackendUrlException(string message) : base(message) { }

    /// <summary>An exception saying what to change, caused by <paramref name="innerException"/>.</summary>
    public BackendUrlException(string message, Exception innerException) : base(message, innerException) { }
}
