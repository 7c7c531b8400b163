using Conveyor.AspNetCore.Security;

namespace Conveyor.AspNetCore;

/// <summary>Settings of the HTTP API, bound from the <c>Conveyor</c> configuration section.</summary>
public sealed class ConveyorApiOptions
{
    /// <summary>One mebibyte, the default <see cref="MaxRequestBodySize"/>.</summary>
    public const long DefaultMaxRequestBodySize = 1024 * 1024;

    /// <summary>Keys accepted in <c>Authorization: Bearer &lt;key&gt;</c>, each with every scope (admin); at least 32
    /// characters. When any key is configured here or in <see cref="ApiKeyFile"/>, or stored in the backend
    /// (<c>conveyor keys create</c>), every <c>/api</c> request needs one; health checks and the OpenAPI document stay
    /// open. Default none: <c>/api</c> is open, which is safe only on a loopback address.</summary>
    public IList<string> ApiKeys { get; } = [];

    /// <summary>A file of keys, one a line, each optionally followed by <c>scopes=read,enqueue</c> and
    /// <c>queues=emails,reports</c> (admin on every queue without them); <c>#</c> starts a comment line. Read once at
    /// start. Default none.</summary>
    public string? ApiKeyFile { get; set; }

    /// <summary>How often the server reads the stored keys again (a key revoked by another process is refused from then
    /// on) and writes their last uses, in one batch. Default 30 s.</summary>
    public TimeSpan ApiKeyRefreshInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Wrong keys one remote address may present per <see cref="FailedAuthWindow"/> before its attempts are
    /// answered 429 until the window ends. Default 10.</summary>
    public int FailedAuthLimit { get; set; } = 10;

    /// <summary>The window of <see cref="FailedAuthLimit"/>. Default 1 minute.</summary>
    public TimeSpan FailedAuthWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The API's rate limit per remote address (<c>Conveyor:RateLimit:PermitsPerSecond</c>, <c>:Burst</c>).</summary>
    public ApiRateLimitOptions RateLimit { get; } = new();

    /// <summary>Origins allowed to call the API from browsers (<c>Conveyor:Cors:Origins</c>); none by default.</summary>
    public ApiCorsOptions Cors { get; } = new();

    /// <summary>Dashboard users' sign-in: lockout and password rules (<c>Conveyor:Users:*</c>).</summary>
    public UserSignInOptions Users { get; } = new();

    /// <summary>Largest request body the API reads, in bytes; a larger one is answered 413. Default 1 MiB (1,048,576).</summary>
    public long MaxRequestBodySize { get; set; } = DefaultMaxRequestBodySize;

    /// <summary>Most tasks in one <c>POST /api/v1/tasks/batch</c>. Default 1,000.</summary>
    public int MaxBatchSize { get; set; } = 1000;

    /// <summary>Page size of <c>GET /api/v1/tasks</c> when the request gives no <c>limit</c>. Default 100; at most 1,000.</summary>
    public int DefaultPageSize { get; set; } = 100;

    /// <summary>The <c>Retry-After</c> of a 503 answered while the backend cannot be reached. Default 5 s.</summary>
    public TimeSpan RetryAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest wait for the backend's readiness check; a backend that has not answered by then is reported
    /// unhealthy, so <c>/health/ready</c> answers 503 within about this time when a server hangs or is down. Default 2 s.</summary>
    public TimeSpan HealthCheckTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long <c>GET /api/v1/events</c> stays silent before it sends a comment line, so that proxies keep an
    /// idle stream open. Default 15 s.</summary>
    public TimeSpan EventStreamHeartbeat { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Most events waiting to be written to one event-stream client; a client that falls further behind is sent
    /// <c>event: overflow</c> and dropped, so a slow client never grows the server's memory. Default 1,000.</summary>
    public int EventStreamBuffer { get; set; } = 1000;

    /// <summary>How long a dashboard session lasts once an API key was exchanged for its cookie. Default 12 hours.</summary>
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(12);

    /// <summary>The secret every replica signs dashboard sessions with, besides the key or user that opened them: at
    /// least 32 characters, kept out of the database (<c>CONVEYOR_SESSION_SECRET</c>). Default none: a random secret per
    /// process, so that sessions end when the server restarts and are accepted by that process only.</summary>
    public string? SessionSecret { get; set; }

    /// <summary>A file whose first line is <see cref="SessionSecret"/> (<c>CONVEYOR_SESSION_SECRET_FILE</c>,
    /// <c>--session-secret-file</c>). Read once at start. Default none.</summary>
    public string? SessionSecretFile { get; set; }

    /// <summary>Whether the server counts task events for <c>GET /api/v1/stats</c> (the dashboard's charts). While on, it
    /// receives every process's events through the backend's notifier, which asks each worker to publish them: one
    /// notification per state change. Default true.</summary>
    public bool RecordTaskStats { get; set; } = true;

    /// <summary>Whether <c>MapConveyorApi</c> maps <c>/health/live</c> and <c>/health/ready</c>. Default true.</summary>
    public bool MapHealthChecks { get; set; } = true;

    /// <summary>Whether <c>MapConveyorApi</c> maps <c>/openapi/v1.json</c>. Default true.</summary>
    public bool MapOpenApi { get; set; } = true;
}

/// <summary>Dashboard users' sign-in (<c>Conveyor:Users:*</c>).</summary>
public sealed class UserSignInOptions
{
    /// <summary>Failed sign-ins in a row that lock a user (default 5).</summary>
    public int MaxFailures { get; set; } = 5;

    /// <summary>How long a locked user is refused (default 15 minutes).</summary>
    public TimeSpan LockoutDuration { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Shortest password accepted (default 12).</summary>
    public int MinPasswordLength { get; set; } = 12;
}
