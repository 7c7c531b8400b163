using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>One audit entry as <c>GET /api/v1/audit</c> answers it.</summary>
/// <param name="Id">The entry's id (UUIDv7).</param>
/// <param name="At">When.</param>
/// <param name="Actor">Who: an API key's id, <c>loopback</c>, <c>cli</c> or <c>anonymous</c>.</param>
/// <param name="ActorKind"><c>api-key</c>, <c>session</c>, <c>loopback</c>, <c>cli</c> or <c>anonymous</c>.</param>
/// <param name="Action">What (<c>task.cancel</c>, <c>session.sign-in</c>…).</param>
/// <param name="Target">To what, or null.</param>
/// <param name="Outcome"><c>ok</c>, <c>refused</c> or <c>failed</c>.</param>
/// <param name="Status">The HTTP status answered; null for the CLI.</param>
/// <param name="RemoteAddress">From where, or null.</param>
/// <param name="UserAgent">The client's User-Agent (cut), or null.</param>
/// <param name="Details">More context, or null.</param>
public sealed record AuditEntryResource(Guid Id, DateTimeOffset At, string Actor, string ActorKind, string Action, string? Target,
    string Outcome, int? Status, string? RemoteAddress, string? UserAgent, JsonElement? Details)
{
    /// <summary>The resource of <paramref name="entry"/>.</summary>
    public static AuditEntryResource From(AuditEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        JsonElement? details = null;
        if (entry.Details is { Length: > 0 } text)
        {
            using var document = JsonDocument.Parse(text);
            details = document.RootElement.Clone();
        }
        return new AuditEntryResource(entry.Id, entry.At, entry.Actor, entry.ActorKind, entry.Action, entry.Target, entry.Outcome,
            entry.Status, entry.RemoteAddress, entry.UserAgent, details);
    }
}

/// <summary>A page of the audit log, newest first.</summary>
/// <param name="Entries">The entries.</param>
/// <param name="NextCursor">Pass as <c>cursor</c> for the next page; null on the last.</param>
public sealed record AuditPageResource(IReadOnlyList<AuditEntryResource> Entries, string? NextCursor);
