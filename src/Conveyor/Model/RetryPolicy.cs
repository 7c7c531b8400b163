namespace Conveyor;

/// <summary>How the delay between attempts grows.</summary>
public enum RetryBackoff
{
    /// <summary>Doubles after each failed attempt, from <see cref="RetryPolicy.BaseDelay"/> up to <see cref="RetryPolicy.MaxDelay"/>.</summary>
    Exponential,
    /// <summary>The same delay after every failed attempt: <see cref="RetryPolicy.BaseDelay"/>, which equals <see cref="RetryPolicy.MaxDelay"/>.</summary>
    Fixed,
}

/// <summary>
/// When and how a failed attempt is retried. The delay before attempt n+1 is <c>min(MaxDelay, BaseDelay * 2^(n-1))</c>,
/// scaled by a random factor in [1 - Jitter, 1 + Jitter] and never above <see cref="MaxDelay"/>. A fixed backoff is the
/// same formula with <see cref="BaseDelay"/> equal to <see cref="MaxDelay"/> (<see cref="Fixed"/>): every backend already
/// stores those two delays, so a fixed policy needs nothing new from any of them.
/// </summary>
/// <remarks>
/// Which failures are retried: an exception whose type, or one of its base types, is named in <see cref="NeverRetryOn"/>
/// is never retried; when <see cref="RetryOn"/> is not empty, only exceptions named there are (Celery's
/// <c>autoretry_for</c> and <c>dont_autoretry_for</c>; the never list wins). A failure that is not retried makes its task
/// <c>dead</c> at once with its error. Names are full (<c>System.Net.Http.HttpRequestException</c>) or short
/// (<c>HttpRequestException</c>), compared case-sensitively; a generic type is named as its definition
/// (<c>MyException`1</c>). A time limit counts as <c>System.TimeoutException</c>.
/// The policy is resolved where a task is enqueued (per enqueue, else the task type's, else <see cref="Default"/>) and
/// stored with the task, so the worker that runs it applies the policy it was enqueued with.
/// </remarks>
/// <param name="BaseDelay">Delay after the first failed attempt. Default 1 s.</param>
/// <param name="MaxDelay">Upper bound of any delay. Default 10 min.</param>
/// <param name="Jitter">Relative spread in [0, 1]. Default 0.2 (±20 %).</param>
public sealed record RetryPolicy(TimeSpan BaseDelay, TimeSpan MaxDelay, double Jitter = 0.2)
{
    /// <summary>Most exception names in each of <see cref="RetryOn"/> and <see cref="NeverRetryOn"/>: 50.</summary>
    public const int MaxExceptionNames = 50;

    /// <summary>Longest exception name, in characters: 500.</summary>
    public const int MaxExceptionNameLength = 500;

    /// <summary>Longest delay a policy may give: 365 days.</summary>
    public static TimeSpan MaxAllowedDelay { get; } = TimeSpan.FromDays(365);

    /// <summary>1 s base, 10 min cap, ±20 % jitter, every exception retried.</summary>
    public static RetryPolicy Default { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10));

    /// <summary>Exponential backoff: <paramref name="baseDelay"/> after the first failure, doubling up to <paramref name="maxDelay"/>.</summary>
    public static RetryPolicy Exponential(TimeSpan baseDelay, TimeSpan maxDelay, double jitter = 0.2) => new(baseDelay, maxDelay, jitter);

    /// <summary>Fixed backoff: <paramref name="delay"/> after every failure.</summary>
    public static RetryPolicy Fixed(TimeSpan delay, double jitter = 0.2) => new(delay, delay, jitter);

    /// <summary><see cref="RetryBackoff.Fixed"/> when <see cref="BaseDelay"/> equals <see cref="MaxDelay"/>, else exponential.</summary>
    public RetryBackoff Backoff => BaseDelay == MaxDelay ? RetryBackoff.Fixed : RetryBackoff.Exponential;

    /// <summary>When not empty, only exceptions of these types (or types derived from them) are retried; others make the
    /// task dead at once. Full or short type names. Default empty: every exception is retried.</summary>
    public IReadOnlyList<string> RetryOn { get; init; } = [];

    /// <summary>Exceptions of these types (or types derived from them) are never retried: the task goes dead at once.
    /// Wins over <see cref="RetryOn"/>. Default empty.</summary>
    public IReadOnlyList<string> NeverRetryOn { get; init; } = [];

    /// <summary>This policy with <paramref name="exceptionTypes"/> added to <see cref="RetryOn"/> (by full name).</summary>
    public RetryPolicy WithRetryOn(params Type[] exceptionTypes) => this with { RetryOn = [.. RetryOn, .. Names(exceptionTypes)] };

    /// <summary>This policy with <typeparamref name="TException"/> added to <see cref="RetryOn"/>.</summary>
    public RetryPolicy WithRetryOn<TException>() where TException : Exception => WithRetryOn(typeof(TException));

    /// <summary>This policy with <paramref name="exceptionTypes"/> added to <see cref="NeverRetryOn"/> (by full name).</summary>
    public RetryPolicy WithNeverRetryOn(params Type[] exceptionTypes) => this with { NeverRetryOn = [.. NeverRetryOn, .. Names(exceptionTypes)] };

    /// <summary>This policy with <typeparamref name="TException"/> added to <see cref="NeverRetryOn"/>.</summary>
    public RetryPolicy WithNeverRetryOn<TException>() where TException : Exception => WithNeverRetryOn(typeof(TException));

    /// <summary>Whether a failure with an exception of <paramref name="exceptionType"/> may be retried (attempts allowing):
    /// false when it matches <see cref="NeverRetryOn"/>, or when <see cref="RetryOn"/> is not empty and it matches none of it.</summary>
    public bool ShouldRetry(Type exceptionType)
    {
        ArgumentNullException.ThrowIfNull(exceptionType);
        if (NeverRetryOn.Count > 0 && Matches(exceptionType, NeverRetryOn))
        {
            return false;
        }
        return RetryOn.Count == 0 || Matches(exceptionType, RetryOn);
    }

    /// <summary>Whether <paramref name="exceptionType"/> or one of its base types is named in <paramref name="names"/>, by
    /// full or short name (a generic type by its definition's names).</summary>
    public static bool Matches(Type exceptionType, IReadOnlyCollection<string> names)
    {
        ArgumentNullException.ThrowIfNull(exceptionType);
        ArgumentNullException.ThrowIfNull(names);
        for (var type = exceptionType; type is not null; type = type.BaseType)
        {
            var named = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
            foreach (var name in names)
            {
                if (string.Equals(name, named.FullName, StringComparison.Ordinal) || string.Equals(name, named.Name, StringComparison.Ordinal))
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>Whether <paramref name="name"/> can name an exception type: 1 to <see cref="MaxExceptionNameLength"/>
    /// letters, digits, <c>_</c>, <c>.</c>, <c>+</c> (nested types) and <c>`</c> (generic arity), not starting or ending
    /// with a dot. No commas: the names are stored comma-separated.</summary>
    public static bool IsValidExceptionName(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxExceptionNameLength || name[0] == '.' || name[^1] == '.')
        {
            return false;
        }
        foreach (var c in name)
        {
            if (!(char.IsLetterOrDigit(c) || c is '_' or '.' or '+' or '`'))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The problems of this policy, each as a field (under <paramref name="prefix"/>, such as <c>retry.</c>) and
    /// what is accepted; empty when it is valid.</summary>
    public IReadOnlyList<FieldError> Validate(string prefix = "")
    {
        var errors = new List<FieldError>();
        if (BaseDelay < TimeSpan.Zero || BaseDelay > MaxAllowedDelay)
        {
            errors.Add(new(prefix + "delay", $"{BaseDelay} is out of range: from 0 to {MaxAllowedDelay.TotalDays:0} days"));
        }
        if (MaxDelay < TimeSpan.Zero || MaxDelay > MaxAllowedDelay)
        {
            errors.Add(new(prefix + "maxDelay", $"{MaxDelay} is out of range: from 0 to {MaxAllowedDelay.TotalDays:0} days"));
        }
        else if (MaxDelay < BaseDelay)
        {
            errors.Add(new(prefix + "maxDelay", $"{MaxDelay} is below the delay of {BaseDelay}: an exponential backoff grows from its delay up to maxDelay"));
        }
        if (double.IsNaN(Jitter) || Jitter < 0 || Jitter > 1)
        {
            errors.Add(new(prefix + "jitter", $"{Jitter} is out of range: a fraction from 0 to 1 (0.2 spreads delays by ±20 %)"));
        }
        ValidateNames(RetryOn, prefix + "retryOn", errors);
        ValidateNames(NeverRetryOn, prefix + "neverRetryOn", errors);
        return errors;
    }

    private static void ValidateNames(IReadOnlyList<string> names, string field, List<FieldError> errors)
    {
        if (names.Count > MaxExceptionNames)
        {
            errors.Add(new(field, $"lists {names.Count} names; at most {MaxExceptionNames}"));
            return;
        }
        for (var i = 0; i < names.Count; i++)
        {
            if (!IsValidExceptionName(names[i]))
            {
                errors.Add(new($"{field}[{i}]", $"'{names[i]}' is not an exception type name: a full or short .NET type name such as " +
                    $"\"System.TimeoutException\" or \"TimeoutException\" (letters, digits, '_', '.', '+', '`'; 1 to {MaxExceptionNameLength} characters)"));
            }
        }
    }

    /// <summary>The delay after failed attempt <paramref name="attempt"/> (1-based).</summary>
    public TimeSpan DelayAfter(int attempt, Random? random = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var exponent = Math.Min(attempt - 1, 40);
        var raw = BaseDelay.TotalMilliseconds * Math.Pow(2, exponent);
        var capped = Math.Min(raw, MaxDelay.TotalMilliseconds);
        var jitter = Math.Clamp(Jitter, 0, 1);
        var factor = 1 + (((random ?? Random.Shared).NextDouble() * 2) - 1) * jitter;
        return TimeSpan.FromMilliseconds(Math.Min(capped * factor, MaxDelay.TotalMilliseconds));
    }

    /// <summary>Equal when the delays, jitter and both exception lists (in order) are.</summary>
    public bool Equals(RetryPolicy? other) =>
        other is not null && BaseDelay == other.BaseDelay && MaxDelay == other.MaxDelay && Jitter.Equals(other.Jitter)
        && RetryOn.SequenceEqual(other.RetryOn, StringComparer.Ordinal) && NeverRetryOn.SequenceEqual(other.NeverRetryOn, StringComparer.Ordinal);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(BaseDelay, MaxDelay, Jitter, RetryOn.Count, NeverRetryOn.Count);

    private static IEnumerable<string> Names(Type[] types)
    {
        ArgumentNullException.ThrowIfNull(types);
        foreach (var type in types)
        {
            ArgumentNullException.ThrowIfNull(type, nameof(types));
            if (!typeof(Exception).IsAssignableFrom(type))
            {
                throw new ArgumentException($"{type.FullName} is not an exception type.", nameof(types));
            }
            var named = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
            yield return named.FullName ?? named.Name;
        }
    }
}
