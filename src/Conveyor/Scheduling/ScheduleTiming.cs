using Cronos;

namespace Conveyor.Scheduling;

/// <summary>When a schedule's ticks fall: a parsed cron expression in its time zone, or a fixed interval from an anchor.
/// Ticks are whole instants (UTC); each one is fired at most once, under a key made of its time.</summary>
public sealed class ScheduleTiming
{
    private readonly CronExpression? _cron;
    private readonly TimeZoneInfo _zone;
    private readonly TimeSpan _every;
    private readonly DateTimeOffset _anchor;

    private ScheduleTiming(CronExpression? cron, TimeZoneInfo zone, TimeSpan every, DateTimeOffset anchor)
    {
        _cron = cron;
        _zone = zone;
        _every = every;
        _anchor = anchor;
    }

    /// <summary>Shortest interval accepted.</summary>
    public static TimeSpan MinInterval { get; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest interval accepted: 366 days.</summary>
    public static TimeSpan MaxInterval { get; } = TimeSpan.FromDays(366);

    /// <summary>The timing of <paramref name="definition"/>, whose interval ticks count from <paramref name="anchor"/>.</summary>
    /// <exception cref="ScheduleValidationException">The cron expression, time zone or interval is not accepted.</exception>
    public static ScheduleTiming For(ScheduleDefinition definition, DateTimeOffset anchor)
    {
        ArgumentNullException.ThrowIfNull(definition);
        var errors = new List<FieldError>();
        var timing = TryCreate(definition, anchor, "", errors);
        return timing ?? throw new ScheduleValidationException(errors);
    }

    /// <summary>Adds the timing's problems to <paramref name="errors"/> (fields named with <paramref name="prefix"/>) and
    /// returns null, or returns the timing.</summary>
    internal static ScheduleTiming? TryCreate(ScheduleDefinition definition, DateTimeOffset anchor, string prefix, List<FieldError> errors)
    {
        var before = errors.Count;
        TimeZoneInfo? zone = null;
        if (string.IsNullOrWhiteSpace(definition.TimeZone))
        {
            errors.Add(new(prefix + "timeZone", "is empty: give an IANA time zone such as 'Europe/Paris', or 'UTC'"));
        }
        else if (!TimeZoneInfo.TryFindSystemTimeZoneById(definition.TimeZone, out zone))
        {
            errors.Add(new(prefix + "timeZone", $"'{definition.TimeZone}' is not a known time zone: give an IANA name such as 'Europe/Paris', or 'UTC'"));
        }
        CronExpression? cron = null;
        if (definition.Cron is not null && definition.Every is not null)
        {
            errors.Add(new(prefix + "cron", "give either 'cron' or 'every', not both"));
        }
        else if (definition.Cron is null && definition.Every is null)
        {
            errors.Add(new(prefix + "cron", "give 'cron' (e.g. '0 0 3 * * *') or 'every' (e.g. 'PT10S')"));
        }
        else if (definition.Cron is { } text)
        {
            cron = ParseCron(text, prefix, errors);
        }
        else if (definition.Every is { } every && (every < MinInterval || every > MaxInterval))
        {
            errors.Add(new(prefix + "every", $"{every} is outside the accepted range: at least 1 second, at most 366 days"));
        }
        if (errors.Count > before)
        {
            return null;
        }
        return new ScheduleTiming(cron, zone!, definition.Every ?? TimeSpan.Zero, TruncateToSecond(anchor));
    }

    private static CronExpression? ParseCron(string text, string prefix, List<FieldError> errors)
    {
        var fields = text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        if (fields is not (5 or 6))
        {
            errors.Add(new(prefix + "cron", $"'{text}' has {fields} fields: give 5 (minute hour day month weekday) or 6 (second first)"));
            return null;
        }
        try
        {
            return CronExpression.Parse(text, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        }
        catch (CronFormatException ex)
        {
            errors.Add(new(prefix + "cron", $"'{text}' is not a valid cron expression: {ex.Message}"));
            return null;
        }
    }

    /// <summary>The first tick strictly after <paramref name="after"/>, or null when there is none (a cron expression that
    /// never matches again, such as 30 February).</summary>
    public DateTimeOffset? NextAfter(DateTimeOffset after)
    {
        if (_cron is not null)
        {
            return _cron.GetNextOccurrence(after, _zone, inclusive: false)?.ToUniversalTime();
        }
        if (after < _anchor)
        {
            return _anchor;
        }
        var steps = ((after - _anchor).Ticks / _every.Ticks) + 1;
        return _anchor + TimeSpan.FromTicks(steps * _every.Ticks);
    }

    /// <summary>Ticks in (<paramref name="after"/>, <paramref name="until"/>], oldest first; at most
    /// <paramref name="limit"/>, keeping the latest ones. <paramref name="total"/> is how many there were in all.</summary>
    public IReadOnlyList<DateTimeOffset> Between(DateTimeOffset after, DateTimeOffset until, int limit, out long total)
    {
        var ticks = new Queue<DateTimeOffset>();
        total = 0;
        if (_cron is null && until > after)
        {
            // Fixed intervals: count without walking, then list only the latest ones.
            var first = NextAfter(after)!.Value;
            if (first > until)
            {
                return [];
            }
            total = ((until - first).Ticks / _every.Ticks) + 1;
            var skip = Math.Max(0, total - limit);
            for (var i = skip; i < total; i++)
            {
                ticks.Enqueue(first + TimeSpan.FromTicks(i * _every.Ticks));
            }
            return [.. ticks];
        }
        var cursor = after;
        while (NextAfter(cursor) is { } tick && tick <= until)
        {
            total++;
            ticks.Enqueue(tick);
            if (ticks.Count > limit)
            {
                ticks.Dequeue();
            }
            cursor = tick;
        }
        return [.. ticks];
    }

    /// <summary>The next <paramref name="count"/> ticks after <paramref name="after"/>.</summary>
    public IReadOnlyList<DateTimeOffset> Next(DateTimeOffset after, int count)
    {
        var ticks = new List<DateTimeOffset>(count);
        var cursor = after;
        while (ticks.Count < count && NextAfter(cursor) is { } tick)
        {
            ticks.Add(tick);
            cursor = tick;
        }
        return ticks;
    }

    private static DateTimeOffset TruncateToSecond(DateTimeOffset time) =>
        new(time.UtcTicks - (time.UtcTicks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
}

/// <summary>Thrown when a schedule is not accepted; nothing was stored.</summary>
public sealed class ScheduleValidationException : ArgumentException
{
    /// <summary>Creates the exception from the field errors.</summary>
    public ScheduleValidationException(IReadOnlyList<FieldError> errors)
        : base(string.Join("; ", errors.Select(e => $"{e.Field}: {e.Message}")))
    {
        Errors = errors;
    }

    /// <summary>Creates the exception.</summary>
    public ScheduleValidationException() : this([]) { }

    /// <summary>Creates the exception with a message.</summary>
    public ScheduleValidationException(string message) : base(message) { Errors = []; }

    /// <summary>Creates the exception with a message and cause.</summary>
    public ScheduleValidationException(string message, Exception innerException) : base(message, innerException) { Errors = []; }

    /// <summary>Every problem found.</summary>
    public IReadOnlyList<FieldError> Errors { get; }
}
