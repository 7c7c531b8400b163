using System.Globalization;
using System.Net;
using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Conveyor.Redis;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;
using Conveyor.Server.Tasks;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Configuration.Json;
using Npgsql;
using IPNetwork = System.Net.IPNetwork;

namespace Conveyor.Server.Cli.Doctor;

/// <summary>
/// The items of docs/security.md's checklist, each checked against the configuration <c>conveyor server</c> would run with:
/// the same sources and flags, and the same checks the server makes at start (<see cref="ConveyorHosts.BuildServer"/>),
/// whose refusals are the items' failures here. Files are looked at where they are; nothing is created.
/// </summary>
internal sealed class SecurityChecklist
{
    private const string HostSetting = "HOST (Conveyor:Host, --host)";
    private const string KeysSetting = "CONVEYOR_API_KEYS or CONVEYOR_API_KEY_FILE (Conveyor:ApiKeys, Conveyor:ApiKeyFile, --api-key-file)";
    private const string AllowedHostsSetting = "ALLOWED_HOSTS (Conveyor:AllowedHosts, --allowed-hosts)";
    private const string TlsSetting = "CONVEYOR_TLS__CERTIFICATE_FILE and CONVEYOR_TLS__KEY_FILE (--tls-cert, --tls-key), or CONVEYOR_BEHIND_PROXY=true (--behind-proxy) behind a TLS proxy";
    private const string KnownProxiesSetting = "CONVEYOR_KNOWN_PROXIES (Conveyor:KnownProxies, --known-proxies)";
    private const string HstsSetting = "CONVEYOR_TLS__HSTS_MAX_AGE (Conveyor:Tls:HstsMaxAge)";
    private const string HttpHostsSetting = "CONVEYOR_HTTP__ALLOWED_HOSTS (Conveyor:Http:AllowedHosts)";
    private const string HttpNetworksSetting = "CONVEYOR_HTTP__ALLOWED_NETWORKS (Conveyor:Http:AllowedNetworks)";
    private const string EncryptionSetting = "CONVEYOR_ENCRYPTION_KEY or CONVEYOR_ENCRYPTION_KEY_FILE (Conveyor:Encryption, --encryption-key-file)";
    private const string CorsSetting = "CONVEYOR_CORS__ORIGINS (Conveyor:Cors:Origins)";
    private const string RateLimitSetting = "CONVEYOR_RATE_LIMIT__PERMITS_PER_SECOND and CONVEYOR_RATE_LIMIT__BURST (Conveyor:RateLimit)";
    private const string BodySizeSetting = "CONVEYOR_MAX_REQUEST_BODY_SIZE (Conveyor:MaxRequestBodySize)";
    private const string DatabaseUrlSetting = "DATABASE_URL (--database-url)";
    private const string RedisUrlSetting = "REDIS_URL (--redis-url)";
    private const string AmqpUrlSetting = "AMQP_URL (--amqp-url)";

    /// <summary>A request body above this is read into memory whole before it is parsed: a warning, not a failure.</summary>
    internal const long LargeRequestBody = 32L * 1024 * 1024;

    /// <summary>A certificate that expires sooner than this warns.</summary>
    internal static readonly TimeSpan CertificateRenewal = TimeSpan.FromDays(30);

    private const UnixFileMode GroupBits = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute;
    private const UnixFileMode OtherBits = UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private readonly IConfigurationRoot _configuration;
    private readonly ConveyorSettings _settings;
    private readonly StoredKeys _storedKeys;
    private readonly DateTimeOffset _now;
    private readonly ServerOptions _server;
    private readonly IReadOnlyList<ApiCaller>? _configuredKeys;
    private readonly string? _keysProblem;
    private readonly SecretRedactor _redactor;

    public SecurityChecklist(IConfigurationRoot configuration, ConveyorSettings settings, StoredKeys storedKeys, SecretRedactor redactor, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _configuration = configuration;
        _redactor = redactor;
        _settings = settings;
        _storedKeys = storedKeys;
        _now = now;
        _server = settings.Server;
        try
        {
            _configuredKeys = ConfiguredApiKeys.Read(settings.Api);
        }
        catch (InvalidOperationException ex)
        {
            _keysProblem = ex.Message;
        }
    }

    private bool KeysConfigured => _configuredKeys is { Count: > 0 };

    private bool Loopback => ListenAddress.IsLoopback(_server.Host);

    /// <summary>Every item, 1 to 14, in the order of docs/security.md.</summary>
    public IReadOnlyList<ChecklistResult> Run() =>
    [
        ChecklistResult.From(1, "Nothing exposed by accident", Exposure()),
        ChecklistResult.From(2, "Keys required off loopback, scoped, stored hashed, failures slowed down", ApiKeys()),
        ChecklistResult.From(3, "DNS rebinding (Host filtering)", HostFiltering()),
        ChecklistResult.From(4, "http.request cannot reach the network it runs in", HttpRequestTask()),
        ChecklistResult.From(5, "Database files private", DatabaseFiles()),
        ChecklistResult.From(6, "Redis: no admin commands", RedisAdmin()),
        ChecklistResult.From(7, "Not run as root", Privileges()),
        ChecklistResult.From(8, "Secrets out of process listings", Secrets()),
        ChecklistResult.From(9, "TLS", Tls()),
        ChecklistResult.From(10, "Payload encryption at rest", Encryption()),
        ChecklistResult.From(11, "CORS closed, security headers, request size and rate limits", Traffic()),
        ChecklistResult.From(12, "Dashboard logins with MFA, audit log", [DashboardLogins(), SessionSigning()]),
        ChecklistResult.From(13, "conveyor doctor", [new Finding(CheckStatus.Pass, "this report: every item of docs/security.md checked against the configuration conveyor server would run with")]),
        ChecklistResult.From(14, "Fuzzing in CI", [new Finding(CheckStatus.NotApplicable,
            "a property of the build, not of this configuration: CI sends 100,000 generated hostile requests to a real server (docs/security.md#fuzzing)")]),
    ];

    private string ListenUrl => ListenAddress.Url(_server.Host, _server.Port, tls: !string.IsNullOrWhiteSpace(_server.Tls.CertificateFile));

    private List<Finding> Exposure()
    {
        var findings = new List<Finding>();
        if (ConveyorHosts.KestrelEndpointsProblem(_configuration) is { } endpoints)
        {
            findings.Add(new Finding(CheckStatus.Fail, endpoints, "Kestrel:Endpoints (remove it; HOST and PORT set the address)"));
        }
        if (Loopback)
        {
            findings.Add(new Finding(CheckStatus.Pass, $"listens on {ListenUrl}: reachable from this machine only"));
            return findings;
        }
        var where = _server.Host is "0.0.0.0" or "::" or "[::]" or "*" or "+" ? $"{ListenUrl} (every interface)" : ListenUrl;
        var withoutKeys = !KeysConfigured;
        var withoutTls = string.IsNullOrWhiteSpace(_server.Tls.CertificateFile) && !_server.BehindProxy;
        if (!withoutKeys && !withoutTls)
        {
            findings.Add(new Finding(CheckStatus.Pass, $"listens on {where}, reachable from the network, with API keys and {(_server.BehindProxy ? "a TLS proxy in front" : "TLS")}"));
        }
        else
        {
            var missing = withoutKeys && withoutTls ? "a configured API key (item 2) and TLS (item 9)" : withoutKeys ? "a configured API key (item 2)" : "TLS (item 9)";
            findings.Add(new Finding(CheckStatus.Fail, $"listens on {where}, reachable from the network, without {missing}: the server refuses to start",
                $"{HostSetting}: 127.0.0.1, or {(withoutKeys && withoutTls ? "API keys and TLS" : withoutKeys ? "API keys" : "TLS")}"));
        }
        return findings;
    }

    private List<Finding> ApiKeys()
    {
        var findings = new List<Finding>();
        var api = _settings.Api;
        var slowed = $"{api.FailedAuthLimit} wrong keys per {Duration(api.FailedAuthWindow)} from one address, then 429";
        if (_keysProblem is not null)
        {
            findings.Add(new Finding(CheckStatus.Fail, Refusal(_keysProblem), KeysSetting));
            return findings;
        }
        var stored = _storedKeys.Active is { } active ? $"{Count(active, "stored key")}" : $"stored keys unknown: {_storedKeys.Problem}";
        if (KeysConfigured)
        {
            findings.Add(new Finding(CheckStatus.Pass,
                $"{Count(_configuredKeys!.Count, "configured key")} of at least {ApiKeyFormat.MinimumLength} characters, {stored}; every /api call needs one; {slowed}"));
        }
        else if (!Loopback || _server.BehindProxy)
        {
            findings.Add(new Finding(CheckStatus.Fail,
                $"{(_server.BehindProxy ? "behind a proxy" : $"listening on {_server.Host}")} without a configured API key: the server refuses to start " +
                "(stored keys alone do not let it start off loopback)", KeysSetting));
        }
        else if (_storedKeys.Active is > 0)
        {
            findings.Add(new Finding(CheckStatus.Pass, $"no configured key; {stored}, so every /api call needs one; loopback; {slowed}"));
        }
        else if (_storedKeys.Active is 0)
        {
            findings.Add(new Finding(CheckStatus.Pass, "no keys: /api is open to processes on this machine only (loopback); off loopback the server would need one"));
        }
        else
        {
            findings.Add(new Finding(CheckStatus.Unknown,
                $"no configured key, and {stored}: whether /api needs a key depends on them (on loopback it is reachable from this machine only)"));
        }
        return findings;
    }

    private List<Finding> HostFiltering()
    {
        IReadOnlyList<string> hosts;
        try
        {
            hosts = ListenAddress.AllowedHosts(_server.AllowedHosts, KeysConfigured);
        }
        catch (ConveyorConfigurationException ex)
        {
            return [new Finding(CheckStatus.Fail, Refusal(ex.Message), AllowedHostsSetting)];
        }
        var any = hosts.Contains("*");
        if (any && !KeysConfigured && _storedKeys.Active is not > 0)
        {
            return [new Finding(CheckStatus.Fail,
                "ALLOWED_HOSTS holds '*' without API keys: a web page that rebinds its own name to this address can drive the keyless API from a browser",
                $"{AllowedHostsSetting}: the names clients use, not '*'")];
        }
        if (any && (!Loopback || _server.BehindProxy))
        {
            return [new Finding(CheckStatus.Warn,
                "any Host name is answered (keys are configured and ALLOWED_HOSTS is not set or holds '*'): every /api call needs a key, yet the server answers names it does not serve",
                $"{AllowedHostsSetting}: the names clients use")];
        }
        return [new Finding(CheckStatus.Pass, any
            ? "any Host name is answered on loopback, and every /api call needs a key"
            : $"answers Host {string.Join(", ", hosts)} only")];
    }

    private List<Finding> HttpRequestTask()
    {
        var http = _settings.Http;
        if (HttpDestinationGuard.CheckNetworks(http.AllowedNetworks) is { } problem)
        {
            return [new Finding(CheckStatus.Fail, Refusal(problem), HttpNetworksSetting)];
        }
        var findings = new List<Finding>();
        var hosts = http.AllowedHosts.Select(h => h.Trim()).Where(h => h.Length > 0).ToList();
        if (hosts.Count == 0)
        {
            findings.Add(new Finding(CheckStatus.Pass, "Conveyor:Http:AllowedHosts is empty: every http.request URL is refused"));
        }
        else if (hosts.Contains("*"))
        {
            findings.Add(new Finding(CheckStatus.Warn, "Conveyor:Http:AllowedHosts holds '*': anyone who may enqueue can make the worker call any public host",
                $"{HttpHostsSetting}: the hosts tasks need"));
        }
        // What the guard lets through of the internal ranges it otherwise refuses: a range of AllowedNetworks, or an exact
        // internal address named among the hosts.
        var opened = new List<string>();
        foreach (var entry in http.AllowedNetworks.Concat(hosts.Where(h => IPAddress.TryParse(h.Trim('[', ']'), out _))))
        {
            if (HttpDestinationGuard.TryParseNetwork(entry, out var network) && OpensInternal(network) is { } what)
            {
                opened.Add($"{entry.Trim()} ({what})");
            }
        }
        if (opened.Count > 0)
        {
            findings.Add(new Finding(CheckStatus.Warn,
                $"internal addresses are open to http.request: {string.Join(", ", opened)}; anyone who may enqueue can reach services there",
                $"{HttpNetworksSetting} and {HttpHostsSetting}: the narrowest ranges tasks need"));
        }
        else if (hosts.Count > 0 && !hosts.Contains("*"))
        {
            findings.Add(new Finding(CheckStatus.Pass, $"http.request may call {string.Join(", ", hosts)}, and no internal address (checked on the address connected to)"));
        }
        else if (hosts.Contains("*"))
        {
            findings.Add(new Finding(CheckStatus.Pass, "internal addresses are refused (checked on the address connected to)"));
        }
        return findings;
    }

    /// <summary>Which internal addresses <paramref name="network"/> opens, in words, or null when it holds none.</summary>
    private static string? OpensInternal(IPNetwork network)
    {
        (string Range, string Name)[] named =
        [
            ("169.254.169.254/32", "the cloud metadata address"), ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
            ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"), ("fc00::/7", "unique-local"),
            ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"), ("100.64.0.0/10", "shared"),
        ];
        var hits = named.Select(n => (Network: IPNetwork.Parse(n.Range), n.Name))
            .Where(n => Overlap(n.Network, network)).Select(n => n.Name).Distinct().ToList();
        if (hits.Count > 0)
        {
            return string.Join(", ", hits);
        }
        return HttpDestinationGuard.IsInternal(network.BaseAddress) ? "reserved" : null;
    }

    private static bool Overlap(IPNetwork a, IPNetwork b) =>
        a.BaseAddress.AddressFamily == b.BaseAddress.AddressFamily && (a.Contains(b.BaseAddress) || b.Contains(a.BaseAddress));

    private List<Finding> DatabaseFiles()
    {
        var sqlite = _settings.Backend switch
        {
            SqliteDatabase database => database,
            RabbitMqBroker { Store: SqliteDatabase database } => database,
            _ => null,
        };
        if (sqlite is null)
        {
            return [new Finding(CheckStatus.NotApplicable, $"{Engine(_settings.Backend)} keeps its files itself: its server's data directory is its own to protect")];
        }
        if (OperatingSystem.IsWindows())
        {
            return [new Finding(CheckStatus.NotApplicable, "Windows: file access is by ACL, not checked here; keep the database folder to this user")];
        }
        var path = Path.GetFullPath(sqlite.Path);
        var folder = Path.GetDirectoryName(path) ?? "/";
        var findings = new List<Finding>();
        var seen = new List<string>();
        if (!Directory.Exists(folder))
        {
            seen.Add($"{folder} does not exist yet: it will be created 0700");
        }
        else
        {
            var mode = File.GetUnixFileMode(folder);
            if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
            {
                findings.Add(new Finding(CheckStatus.Fail, $"{folder} is mode {Octal(mode)}: other users may create, replace or delete the database's files there",
                    $"chmod 700 {folder}"));
            }
            else if ((mode & (GroupBits | OtherBits)) != 0)
            {
                findings.Add(new Finding(CheckStatus.Warn, $"{folder} is mode {Octal(mode)}: other users may list the database's files (not read them)",
                    $"chmod 700 {folder}"));
            }
            else
            {
                seen.Add($"{folder} {Octal(mode)}");
            }
        }
        if (!File.Exists(path))
        {
            seen.Add($"{path} does not exist yet: it will be created 0600");
        }
        foreach (var file in new[] { path, path + "-wal", path + "-shm", path + "-journal" }.Where(File.Exists))
        {
            var mode = File.GetUnixFileMode(file);
            if ((mode & (GroupBits | OtherBits)) != 0)
            {
                findings.Add(new Finding(CheckStatus.Fail, $"{file} is mode {Octal(mode)}: other users may read task arguments and results in it",
                    $"chmod 600 {file}"));
            }
            else
            {
                seen.Add($"{file} {Octal(mode)}");
            }
        }
        findings.Add(new Finding(CheckStatus.Pass, string.Join(", ", seen)));
        return findings;
    }

    private List<Finding> RedisAdmin()
    {
        if (_settings.Backend is not RedisKeyspace redis)
        {
            return [new Finding(CheckStatus.NotApplicable, $"{Engine(_settings.Backend)}: no Redis connection")];
        }
        StackExchange.Redis.ConfigurationOptions options;
        try
        {
            options = RedisUrl.Parse(redis.Url);
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            return [new Finding(CheckStatus.Fail, $"REDIS_URL cannot be read ({ex.GetType().Name}): the server cannot start", RedisUrlSetting)];
        }
        var findings = new List<Finding>();
        findings.Add(options.AllowAdmin
            ? new Finding(CheckStatus.Fail, "the Redis configuration sets allowAdmin=true: the connection tasks travel through can send CONFIG, FLUSHALL, KEYS",
                $"{RedisUrlSetting}: remove allowAdmin")
            : new Finding(CheckStatus.Pass, "the connection tasks travel through cannot send CONFIG, FLUSHALL, CLIENT or KEYS"));
        var remote = Endpoints(options).Where(e => !IsLocal(e.Host)).ToList();
        if (remote.Count > 0 && string.IsNullOrEmpty(options.Password))
        {
            findings.Add(new Finding(CheckStatus.Warn,
                $"Redis at {string.Join(", ", remote.Select(e => $"{e.Host}:{e.Port}"))} is off loopback and REDIS_URL gives no password: unless Redis asks for one, anyone who reaches it reads and changes every task",
                $"{RedisUrlSetting}: rediss://:password@host (with requirepass or an ACL user on the server)"));
        }
        return findings;
    }

    private static List<Finding> Privileges()
    {
        if (Environment.IsPrivilegedProcess)
        {
            return [new Finding(CheckStatus.Warn,
                $"runs as {(OperatingSystem.IsWindows() ? "an administrator" : "root")}: a server started this way gives every task's code (and http.request) every privilege of the machine",
                "run it as an unprivileged user (User=conveyor in the systemd unit of docs/operations.md)")];
        }
        return [new Finding(CheckStatus.Pass, $"runs as {Environment.UserName}, not {(OperatingSystem.IsWindows() ? "an administrator" : "root")}")];
    }

    private List<Finding> Secrets()
    {
        var findings = new List<Finding>();
        // A secret in a settings file travels with the file: into version control, backups, images.
        foreach (var provider in _configuration.Providers.OfType<JsonConfigurationProvider>())
        {
            var file = provider.Source.Path ?? "a JSON settings file";
            var held = new List<string>();
            if (provider.GetChildKeys([], "Conveyor:ApiKeys").Any())
            {
                held.Add("Conveyor:ApiKeys");
            }
            held.AddRange(SecretRedactor.SecretKeys.Where(k => provider.TryGet(k, out var value) && !string.IsNullOrEmpty(value)));
            held.AddRange(SecretRedactor.UrlKeys.Where(k => provider.TryGet(k, out var url) && SecretRedactor.UrlPassword(url) is not null)
                .Select(k => $"a password in {k}"));
            if (held.Count > 0)
            {
                findings.Add(new Finding(CheckStatus.Warn, $"{file} holds {string.Join(", ", held)}: a settings file is copied, committed and backed up with the secret",
                    "the environment (a systemd EnvironmentFile of mode 0600) or a key file instead"));
            }
        }
        var tls = _server.Tls;
        var secretFiles = new List<(string? Path, string Setting)>
        {
            (_settings.Api.ApiKeyFile, "Conveyor:ApiKeyFile"),
            (_settings.Api.SessionSecretFile, "Conveyor:SessionSecretFile"),
            (_settings.Encryption.KeyFile, "Conveyor:Encryption:KeyFile"),
            (tls.PasswordFile, "Conveyor:Tls:PasswordFile"),
            // The private key: in its own file, or in the certificate's (a PEM with its key, or a PFX).
            (string.IsNullOrWhiteSpace(tls.KeyFile) ? tls.CertificateFile : tls.KeyFile, string.IsNullOrWhiteSpace(tls.KeyFile) ? "Conveyor:Tls:CertificateFile" : "Conveyor:Tls:KeyFile"),
        };
        var privateFiles = new List<string>();
        if (!OperatingSystem.IsWindows())
        {
            foreach (var (path, setting) in secretFiles)
            {
                if (string.IsNullOrWhiteSpace(path) || !File.Exists(path))
                {
                    // Not set, or missing: the item of that setting says so.
                    continue;
                }
                var mode = File.GetUnixFileMode(path);
                if ((mode & OtherBits) != 0)
                {
                    findings.Add(new Finding(CheckStatus.Fail, $"{setting} {Path.GetFullPath(path)} is mode {Octal(mode)}: every user of this machine can read the secret in it",
                        $"chmod 600 {Path.GetFullPath(path)}"));
                }
                else if ((mode & GroupBits) != 0)
                {
                    findings.Add(new Finding(CheckStatus.Warn, $"{setting} {Path.GetFullPath(path)} is mode {Octal(mode)}: its group can read the secret in it",
                        $"chmod 600 {Path.GetFullPath(path)}"));
                }
                else
                {
                    privateFiles.Add($"{setting} {Octal(mode)}");
                }
            }
        }
        findings.Add(new Finding(CheckStatus.Pass,
            "no flag takes an API key, an encryption key or a TLS password (ps cannot show them)" + (privateFiles.Count > 0 ? $"; {string.Join(", ", privateFiles)}" : "")));
        return findings;
    }

    private List<Finding> Tls()
    {
        var findings = new List<Finding>();
        var tls = _server.Tls;
        (System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate, System.Security.Cryptography.X509Certificates.X509Certificate2Collection Chain)? loaded = null;
        try
        {
            loaded = ServerCertificate.Load(tls);
        }
        catch (ConveyorConfigurationException ex)
        {
            // The message names the setting and the file, never the password.
            findings.Add(new Finding(CheckStatus.Fail, Refusal(ex.Message), TlsSetting));
        }
        if (loaded is { } pair)
        {
            using (pair.Certificate)
            {
                foreach (var link in pair.Chain)
                {
                    link.Dispose();
                }
                findings.Add(CertificateFinding(pair.Certificate, tls.HstsMaxAge));
            }
        }
        else if (findings.Count == 0 && _server.BehindProxy)
        {
            try
            {
                // Made as the server makes it, so that an entry that is not an address fails here as it would there.
                ReverseProxy.Configure(new ForwardedHeadersOptions(), _server.KnownProxies);
                IEnumerable<string> proxies = _server.KnownProxies.Count > 0 ? _server.KnownProxies : ReverseProxy.DefaultKnownProxies;
                findings.Add(new Finding(CheckStatus.Pass, $"plain HTTP behind a TLS proxy (--behind-proxy); forwarded headers believed from {string.Join(", ", proxies)} only"));
            }
            catch (ConveyorConfigurationException ex)
            {
                findings.Add(new Finding(CheckStatus.Fail, Refusal(ex.Message), KnownProxiesSetting));
            }
        }
        else if (findings.Count == 0 && Loopback)
        {
            findings.Add(new Finding(CheckStatus.Pass, $"plain HTTP on loopback ({_server.Host}): nothing crosses the network"));
        }
        else if (findings.Count == 0)
        {
            findings.Add(new Finding(CheckStatus.Fail,
                $"plain HTTP on {ListenUrl}, off loopback, without a TLS proxy: API keys and task data would cross the network in clear; the server refuses to start",
                TlsSetting));
        }
        findings.AddRange(EngineTls());
        return findings;
    }

    private Finding CertificateFinding(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate, TimeSpan hstsMaxAge)
    {
        var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        var until = notAfter.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        var certificateSetting = "CONVEYOR_TLS__CERTIFICATE_FILE (--tls-cert): a renewed certificate";
        if (notAfter <= _now)
        {
            return new Finding(CheckStatus.Fail, $"the certificate {certificate.Subject} expired on {until}: clients refuse the connection", certificateSetting);
        }
        if (new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero) > _now)
        {
            return new Finding(CheckStatus.Fail, $"the certificate {certificate.Subject} is not valid before {certificate.NotBefore.ToUniversalTime():yyyy-MM-dd}", certificateSetting);
        }
        if (notAfter - _now < CertificateRenewal)
        {
            return new Finding(CheckStatus.Warn, $"the certificate {certificate.Subject} expires on {until}, in {(int)(notAfter - _now).TotalDays} days", certificateSetting);
        }
        if (hstsMaxAge <= TimeSpan.Zero)
        {
            return new Finding(CheckStatus.Warn, $"HTTPS with {certificate.Subject} (until {until}), but no Strict-Transport-Security header: a browser may be sent to plain HTTP first",
                $"{HstsSetting}: 365.00:00:00");
        }
        return new Finding(CheckStatus.Pass, $"HTTPS with {certificate.Subject}, valid until {until}, HSTS {Duration(hstsMaxAge)}");
    }

    /// <summary>TLS between the server and its engines: warned, not failed, off loopback only (a private network may be trusted).</summary>
    private IEnumerable<Finding> EngineTls()
    {
        var location = _settings.Backend;
        if (location is RabbitMqBroker broker)
        {
            if (Uri.TryCreate(broker.Url, UriKind.Absolute, out var amqp) && amqp.Scheme.Equals("amqp", StringComparison.OrdinalIgnoreCase) && !IsLocal(amqp.Host))
            {
                yield return new Finding(CheckStatus.Warn, $"RabbitMQ at {amqp.Host}:{(amqp.IsDefaultPort ? 5672 : amqp.Port)} over plain AMQP (amqp://): task messages and the password cross the network in clear",
                    $"{AmqpUrlSetting}: amqps://");
            }
            location = broker.Store;
        }
        if (location is PostgresDatabase postgres)
        {
            NpgsqlConnectionStringBuilder builder;
            try
            {
                builder = new NpgsqlConnectionStringBuilder(postgres.ConnectionString);
            }
            catch (ArgumentException)
            {
                yield break;
            }
            var remote = (builder.Host ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(h => h.StartsWith('[') ? h[1..h.IndexOf(']', StringComparison.Ordinal)] : h.Split(':')[0])
                .Where(h => !h.StartsWith('/') && !IsLocal(h)).ToList();
            if (remote.Count > 0 && builder.SslMode is SslMode.Disable or SslMode.Allow or SslMode.Prefer)
            {
                var mode = builder.SslMode.ToString().ToLowerInvariant();
                yield return new Finding(CheckStatus.Warn,
                    $"PostgreSQL at {string.Join(", ", remote)} with sslmode={mode}: {(builder.SslMode == SslMode.Disable ? "tasks and the password cross the network in clear" : "TLS only if the server offers it, its certificate not checked")}",
                    $"{DatabaseUrlSetting}: ?sslmode=verify-full (or require)");
            }
        }
        else if (location is RedisKeyspace redis)
        {
            StackExchange.Redis.ConfigurationOptions options;
            try
            {
                options = RedisUrl.Parse(redis.Url);
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                yield break;
            }
            var remote = Endpoints(options).Where(e => !IsLocal(e.Host)).ToList();
            if (!options.Ssl && remote.Count > 0)
            {
                yield return new Finding(CheckStatus.Warn,
                    $"Redis at {string.Join(", ", remote.Select(e => $"{e.Host}:{e.Port}"))} over plain TCP (redis://): tasks and the password cross the network in clear",
                    $"{RedisUrlSetting}: rediss://");
            }
        }
    }

    private List<Finding> Encryption()
    {
        try
        {
            if (_settings.Encryption.ReadKeys() is { } keys)
            {
                return [new Finding(CheckStatus.Pass,
                    $"task arguments, results and errors are encrypted (AES-256-GCM) with key id '{keys.Current.Id}'{(keys.Keys.Count > 1 ? $", {keys.Keys.Count - 1} more for reading older values" : "")}")];
            }
        }
        catch (ConveyorConfigurationException ex)
        {
            // The message names the setting (and the file and line), never the key.
            return [new Finding(CheckStatus.Fail, Refusal(ex.Message), EncryptionSetting)];
        }
        return [new Finding(CheckStatus.Warn, "no encryption key: task arguments, results and errors are stored in clear in the backend", EncryptionSetting)];
    }

    private List<Finding> Traffic()
    {
        var api = _settings.Api;
        var findings = new List<Finding>();
        var origins = api.Cors.Origins.Select(o => o.Trim()).ToList();
        if (origins.Contains("*"))
        {
            findings.Add(new Finding(CheckStatus.Fail, "Conveyor:Cors:Origins holds '*': a page of any site could call the API with its visitor's browser",
                $"{CorsSetting}: the origins of the pages that call the API"));
        }
        else if (ApiTrafficPolicies.OriginsProblem(api) is { } problem)
        {
            findings.Add(new Finding(CheckStatus.Fail, Refusal(problem), CorsSetting));
        }
        else
        {
            var plain = origins.Where(o => o.StartsWith("http://", StringComparison.OrdinalIgnoreCase)
                && !IsLocal(new Uri(o).Host)).ToList();
            if (plain.Count > 0)
            {
                findings.Add(new Finding(CheckStatus.Warn, $"Conveyor:Cors:Origins allows plain-HTTP origins {string.Join(", ", plain)}: a network attacker can serve their pages",
                    $"{CorsSetting}: https:// origins"));
            }
        }
        if (ConveyorHosts.RateLimitProblem(api) is { } rateProblem)
        {
            findings.Add(new Finding(CheckStatus.Fail, Refusal(rateProblem), RateLimitSetting));
        }
        else if (api.RateLimit.PermitsPerSecond == 0)
        {
            findings.Add(new Finding(CheckStatus.Warn, "the rate limiter is off (Conveyor:RateLimit:PermitsPerSecond 0): one client can flood the API",
                $"{RateLimitSetting}: 20000 (the default) or what clients need"));
        }
        if (api.MaxRequestBodySize > LargeRequestBody)
        {
            findings.Add(new Finding(CheckStatus.Warn,
                $"request bodies up to {Bytes(api.MaxRequestBodySize)} are accepted, each read into memory before it is parsed: a few clients can exhaust it",
                $"{BodySizeSetting}: 1048576 (the default)"));
        }
        else if (api.MaxRequestBodySize <= 0)
        {
            findings.Add(new Finding(CheckStatus.Warn, $"Conveyor:MaxRequestBodySize is {api.MaxRequestBodySize}: every request with a body is refused (413)",
                $"{BodySizeSetting}: 1048576 (the default)"));
        }
        findings.Add(new Finding(CheckStatus.Pass,
            $"CORS {(origins.Count == 0 ? "closed" : "open to " + string.Join(", ", origins))}; security headers (nosniff, DENY framing, CSP) on every answer; " +
            $"bodies up to {Bytes(api.MaxRequestBodySize)}; " +
            (api.RateLimit.PermitsPerSecond > 0 ? $"{api.RateLimit.PermitsPerSecond} requests a second per address (burst {api.RateLimit.Burst})" : "no rate limit")));
        return findings;
    }

    private Finding DashboardLogins()
    {
        var users = _settings.Api.Users;
        // Built into the server, not a setting that can be left off: MFA is enforced for admins off loopback by code.
        return new Finding(CheckStatus.Pass,
            $"dashboard users (conveyor users add) sign in with a password of {users.MinPasswordLength}+ characters and a TOTP code once enrolled; " +
            $"admins off loopback must enrol; {users.MaxFailures} failures lock a user for {Duration(users.LockoutDuration)}; sign-ins and admin actions are in the audit log");
    }

    private Finding SessionSigning()
    {
        try
        {
            return SessionSecret.From(_settings.Api).Ephemeral
                ? new Finding(CheckStatus.Pass,
                    "dashboard sessions are signed with a random secret drawn at start, not in the database: they end when the server restarts, " +
                    "and another replica refuses them (set a shared secret to keep them)", SessionSecret.Setting)
                : new Finding(CheckStatus.Pass, "dashboard sessions are signed with the configured secret, not in the database: reading the database is not enough to forge one");
        }
        catch (InvalidOperationException ex)
        {
            return new Finding(CheckStatus.Fail, Refusal(ex.Message), SessionSecret.Setting);
        }
    }

    private static IEnumerable<(string Host, int Port)> Endpoints(StackExchange.Redis.ConfigurationOptions options) =>
        options.EndPoints.Select(e => e switch
        {
            DnsEndPoint dns => (dns.Host, dns.Port),
            IPEndPoint ip => (ip.Address.ToString(), ip.Port),
            _ => (e.ToString() ?? "", 0),
        });

    /// <summary>Whether an engine's host is this machine: a loopback name or address.</summary>
    private static bool IsLocal(string host) => ListenAddress.IsLoopback(host);

    private static string Engine(BackendLocation location) => location switch
    {
        PostgresDatabase => "PostgreSQL",
        RedisKeyspace => "Redis",
        RabbitMqBroker { Store: var store } => $"RabbitMQ with {Engine(store)}",
        SqliteDatabase => "SQLite",
        _ => location.GetType().Name,
    };

    /// <summary>A start-up refusal's message as a finding: what is wrong, and that the server would not start. The
    /// messages name settings, never their secret values; a message quotes a library's, though, so it is redacted.</summary>
    private string Refusal(string message) => $"{_redactor.Redact(message).TrimEnd('.')}: the server refuses to start";

    private static string Octal(UnixFileMode mode) => "0" + Convert.ToString((int)mode, 8).PadLeft(3, '0');

    private static string Count(int count, string what) => $"{count} {what}{(count == 1 ? "" : "s")}";

    private static string Bytes(long bytes) => bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0
        ? $"{bytes / (1024 * 1024)} MiB"
        : $"{bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes";

    private static string Duration(TimeSpan span) => span.TotalDays >= 1 && span.TotalDays == Math.Floor(span.TotalDays) ? $"{span.TotalDays:0} days"
        : span.TotalMinutes == 1 ? "minute"
        : span.TotalSeconds >= 60 ? $"{span.TotalMinutes:0.#} minutes"
        : $"{span.TotalSeconds:0.#} s";
}
