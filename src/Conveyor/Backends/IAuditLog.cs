using System.Globalization;

namespace Conveyor.Backends;

/// <summary>One audit entry: who did what, to what, when, from where, and how it ended. Never holds a key, a password or
/// a task's argument values.</summary>
/// <param name="Id">UUIDv7: unique, and ordered by time.</param>
/// <param name="At">When it happened (kept to the millisecond).</param>
/// <param name="Actor">Who: an API key's id, <c>loopback</c> (a server without keys), <c>cli</c> (a command run on the
/// database directly) or <c>anonymous</c> (no valid credentials).</param>
/// <param name="ActorKind">What the actor is: see <see cref="AuditActorKinds"/>.</param>
/// <param name="Action">What: <c>task.cancel</c>, <c>queue.pause</c>, <c>session.sign-in</c>… (docs/security.md).</param>
/// <param name="Target">What it was done to (a task id, a queue, a schedule, a key id), or null.</param>
/// <param name="Outcome">How it ended: see <see cref="AuditOutcomes"/>.</param>
/// <param name="Status">The HTTP status answered, or null (CLI).</param>
/// <param name="RemoteAddress">The client's address (the forwarded client's behind a configured proxy), or null.</param>
/// <param name="UserAgent">The client's User-Agent, cut to <see cref="MaxUserAgentLength"/>, or null.</param>
/// <param name="Details">A small JSON object with more context (no secrets, no argument values), or null.</param>
public sealed record AuditEntry(Guid Id, DateTimeOffset At, string Actor, string ActorKind, string Action, string? Target,
    string Outcome, int? Status = null, string? RemoteAddress = null, string? UserAgent = null, string? Details = null)
{
    /// <summary>Longest User-Agent kept.</summary>
    public const int MaxUserAgentLength = 200;

    /// <summary>Longest target kept.</summary>
    public const int MaxTargetLength = 200;

    /// <summary>The ordinal text of <see cref="Id"/>, the order backends break ties of <see cref="At"/> by.</summary>
    public string IdText => Id.ToString("D", CultureInfo.InvariantCulture);
}

/// <summary>The values of <see cref="AuditEntry.ActorKind"/>.</summary>
public static class AuditActorKinds
{
    /// <summary>A request with an API key (<c>Authorization: Bearer</c>).</summary>
    public const string ApiKey = "api-key";
    /// <summary>A dashboard session opened with an API key.</summary>
    public const string Session = "session";
    /// <summary>A server without keys, reachable from loopback only.</summary>
    public const string Loopback = "loopback";
    /// <summary>A <c>conveyor</c> command run against the database directly.</summary>
    public const string Cli = "cli";
    /// <summary>A request without valid credentials.</summary>
    public const string Anonymous = "anonymous";
}

/// <summary>The values of <see cref="AuditEntry.Outcome"/>.</summary>
public static class AuditOutcomes
{
    /// <summary>Done (2xx).</summary>
    public const string Ok = "ok";
    /// <summary>Not allowed: 401, 403 or 429.</summary>
    public const string Refused = "refused";
    /// <summary>Allowed but not done: another 4xx, or 5xx.</summary>
    public const string Failed = "failed";

    /// <summary>The outcome of an HTTP status.</summary>
    public static string Of(int status) => status switch
    {
        < 400 => Ok,
        401 or 403 or 429 => Refused,
        _ => Failed,
    };
}

/// <summary>Which entries <see cref="IAuditLog.ListAuditAsync"/> returns.</summary>
/// <param name="ActionPrefix">Only actions starting with this text (<c>task.</c>, <c>schedule</c>), or null.</param>
/// <param name="Actor">Only this actor (exact), or null.</param>
/// <param name="Since">Only entries at or after this time, or null.</param>
/// <param name="Until">Only entries at or before this time, or null.</param>
/// <param name="After">Only entries after this position in the list (the <see cref="AuditPage.Next"/> of the previous
/// page), or null for the first page.</param>
/// <param name="Limit">Most entries returned (1 or more).</param>
public sealed record AuditQuery(string? ActionPrefix = null, string? Actor = null, DateTimeOffset? Since = null, DateTimeOffset? Until = null,
    AuditCursor? After = null, int Limit = 100);

/// <summary>A position in the audit list, newest first: the last entry of a page.</summary>
/// <param name="At">That entry's time.</param>
/// <param name="Id">That entry's id.</param>
public sealed record AuditCursor(DateTimeOffset At, Guid Id)
{
    /// <summary>The cursor of <paramref name="entry"/>.</summary>
    public static AuditCursor Of(AuditEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return new(entry.At, entry.Id);
    }

    /// <summary>The text form handed to API callers: <c>&lt;ms&gt;_&lt;id&gt;</c>.</summary>
    public override string ToString() =>
        At.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture) + "_" + Id.ToString("N", CultureInfo.InvariantCulture);

    /// <summary>Reads the text form; false when it is not one.</summary>
    public static bool TryParse(string? text, out AuditCursor? cursor)
    {
        cursor = null;
        var parts = text?.Split('_') ?? [];
        if (parts.Length != 2 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            || ms > 253402300799999 || !Guid.TryParseExact(parts[1], "N", out var id))
        {
            return false;
        }
        cursor = new AuditCursor(DateTimeOffset.FromUnixTimeMilliseconds(ms), id);
        return true;
    }

    /// <summary>Whether <paramref name="entry"/> comes after this position, newest first (older, or as old with a smaller id).</summary>
    public bool Precedes(AuditEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var at = entry.At.ToUnixTimeMilliseconds();
        var mine = At.ToUnixTimeMilliseconds();
        return at < mine || (at == mine && string.CompareOrdinal(entry.IdText, Id.ToString("D", CultureInfo.InvariantCulture)) < 0);
    }
}

/// <summary>A page of the audit list.</summary>
/// <param name="Entries">Newest first.</param>
/// <param name="Next">The cursor of the next page, or null when this is the last.</param>
public sealed record AuditPage(IReadOnlyList<AuditEntry> Entries, AuditCursor? Next)
{
    /// <summary>The page of <paramref name="entries"/>, read newest first up to one more than <paramref name="limit"/>
    /// (the one more tells that a next page exists; it is dropped).</summary>
    public static AuditPage Of(List<AuditEntry> entries, int limit)
    {
        ArgumentNullException.ThrowIfNull(entries);
        limit = Math.Max(1, limit);
        if (entries.Count <= limit)
        {
            return new AuditPage(entries, null);
        }
        entries.RemoveRange(limit, entries.Count - limit);
        return new AuditPage(entries, AuditCursor.Of(entries[^1]));
    }
}

/// <summary>
/// The audit log of the store role: sign-ins and admin actions (docs/security.md "Audit log"). Entries are appended,
/// never changed, listed newest first (by time, then by id's text, descending), and deleted by retention.
/// </summary>
public interface IAuditLog
{
    /// <summary>Appends <paramref name="entry"/>.</summary>
    Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken);

    /// <summary>The entries <paramref name="query"/> selects, newest first, at most <see cref="AuditQuery.Limit"/>; the page's
    /// <see cref="AuditPage.Next"/> is set when more may follow.</summary>
    Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken);

    /// <summary>Deletes up to <paramref name="limit"/> entries older than <paramref name="before"/>, oldest first; returns
    /// how many.</summary>
    Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken);
}
