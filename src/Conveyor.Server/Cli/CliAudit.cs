using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Server.Cli;

/// <summary>Records what an admin command did on the database directly in the audit log, as actor <c>cli</c> with the OS
/// user that ran it. A failed write is reported on stderr and never fails the command (what it did is done).</summary>
internal static class CliAudit
{
    public static async Task RecordAsync(IServiceProvider services, string action, string? target, string outcome, TextWriter error,
        IReadOnlyDictionary<string, object?>? details = null)
    {
        var backend = services.GetRequiredService<IConveyorBackend>();
        if (backend.Audit is not { } audit)
        {
            return;
        }
        var now = services.GetRequiredService<TimeProvider>().GetUtcNow();
        var values = new Dictionary<string, object?> { ["osUser"] = Environment.UserName };
        foreach (var (name, value) in details ?? new Dictionary<string, object?>())
        {
            values[name] = value;
        }
        var entry = new AuditEntry(Guid.CreateVersion7(now), now, "cli", AuditActorKinds.Cli, action, target, outcome,
            Details: JsonSerializer.Serialize(values));
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await audit.AppendAuditAsync(entry, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            await error.WriteLineAsync($"conveyor: warning: the audit entry of {action} could not be written: {ex.Message}").ConfigureAwait(false);
        }
    }
}
