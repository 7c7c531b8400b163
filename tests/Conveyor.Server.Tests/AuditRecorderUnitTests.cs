using System.Net;
using Conveyor.AspNetCore.Audit;
using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Conveyor.Server.Tests;

/// <summary><see cref="AuditRecorder"/>: a backend that cannot write the entry costs a warning, never the request.</summary>
public sealed class AuditRecorderUnitTests
{
    [Fact]
    public async Task A_failing_audit_write_is_logged_as_a_warning_and_does_not_throw()
    {
        var logger = new CollectingLogger();
        var recorder = new AuditRecorder(new BrokenAuditBackend(new InMemoryBackend()), TimeProvider.System, logger);
        var http = new DefaultHttpContext();
        http.Connection.RemoteIpAddress = IPAddress.Parse("203.0.113.5");

        await recorder.RecordAsync(http, "queue.pause", "emails", StatusCodes.Status200OK, null);

        var (level, message) = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, level);
        Assert.Contains("queue.pause", message, StringComparison.Ordinal);
        Assert.Contains("audit store is down", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_entry_is_written_with_the_address_the_user_agent_cut_and_anonymous_without_a_principal()
    {
        var backend = new InMemoryBackend();
        var recorder = new AuditRecorder(backend, TimeProvider.System, new CollectingLogger());
        var http = new DefaultHttpContext();
        http.Connection.RemoteIpAddress = IPAddress.Parse("::ffff:198.51.100.4");
        http.Request.Headers.UserAgent = new string('u', 500);

        await recorder.RecordAsync(http, "session.sign-in-failed", null, StatusCodes.Status401Unauthorized, null);

        var entry = Assert.Single((await backend.ListAuditAsync(new AuditQuery(), CancellationToken.None)).Entries);
        Assert.Equal(("anonymous", AuditActorKinds.Anonymous), (entry.Actor, entry.ActorKind));
        Assert.Equal((AuditOutcomes.Refused, 401), (entry.Outcome, entry.Status));
        Assert.Equal("198.51.100.4", entry.RemoteAddress);
        Assert.Equal(AuditEntry.MaxUserAgentLength, entry.UserAgent!.Length);
    }

    private sealed class CollectingLogger : ILogger<AuditRecorder>
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception)));
    }

    /// <summary>The in-memory backend with an audit log that always fails, as a store that is down would.</summary>
    private sealed class BrokenAuditBackend(InMemoryBackend inner) : IConveyorBackend, IAuditLog
    {
        public string Name => inner.Name;
        public IQueueBackend Queue => inner.Queue;
        public ITaskStore Store => inner.Store;
        public ICoordinationBackend Coordination => inner.Coordination;
        public IScheduleStore Schedules => inner.Schedules;
        public IUniqueKeyStore UniqueKeys => inner.UniqueKeys;
        public INotifier Notifier => inner.Notifier;
        public ILimitStore Limits => inner.Limits;
        public IAuditLog Audit => this;
        public BackendCapabilities Capabilities => inner.Capabilities;
        public Task MigrateAsync(CancellationToken cancellationToken) => inner.MigrateAsync(cancellationToken);
        public Task<BackendHealth> CheckHealthAsync(CancellationToken cancellationToken) => inner.CheckHealthAsync(cancellationToken);
        public Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken) => throw new InvalidOperationException("the audit store is down");
        public Task<AuditPage> ListAuditAsync(AuditQuery query, CancellationToken cancellationToken) => throw new InvalidOperationException("the audit store is down");
        public Task<int> DeleteAuditBeforeAsync(DateTimeOffset before, int limit, CancellationToken cancellationToken) => throw new InvalidOperationException("the audit store is down");
    }
}
