using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using OtpNet;

namespace Conveyor.Server.Tests;

/// <summary>Dashboard users over HTTP: password, then a TOTP code (computed here with Otp.NET) or a single-use recovery
/// code; one generic answer to every failure; lockout after Conveyor:Users:MaxFailures; an admin off loopback (the
/// forwarded client behind a known proxy) must enrol a second factor before anything else; a user's role maps to the
/// key scopes.</summary>
public sealed class UserLoginTests : IAsyncLifetime
{
    private const string AdminKey = "users-admin-key-0123456789abcdefghijklmn";
    private const string Password = "correct horse battery";
    private const string OffLoopback = "203.0.113.9";
    private const string Secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(new Dictionary<string, string?>
    {
        ["Conveyor:ApiKeys"] = AdminKey,
        ["Conveyor:FailedAuthLimit"] = "100000",
        ["Conveyor:Users:MaxFailures"] = "3",
        // The test client connects from loopback, a known proxy by default: X-Forwarded-For is believed.
        ["Conveyor:BehindProxy"] = "true",
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private IUserStore Users => _server.Service<IConveyorBackend>().Users!;

    private Task<bool> AddAsync(string name, string role, bool mfa = false, IReadOnlyList<string>? recoveryCodes = null) =>
        Users.AddUserAsync(new StoredUser(name, role, UserCredentials.HashPassword(Password), DateTimeOffset.UtcNow,
            MfaSecret: mfa ? Secret : null, MfaEnabled: mfa, RecoveryCodeHashes: [.. (recoveryCodes ?? []).Select(UserCredentials.HashRecoveryCode)]), CancellationToken.None);

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, object? body = null, string? session = null,
        string? csrf = null, string? from = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        }
        if (session is not null)
        {
            request.Headers.Add("Cookie", $"conveyor_session={session}");
        }
        if (csrf is not null)
        {
            request.Headers.Add("X-Conveyor-CSRF", csrf);
        }
        if (from is not null)
        {
            request.Headers.Add("X-Forwarded-For", from);
        }
        return await _server.Client.SendAsync(request);
    }

    private async Task<(HttpStatusCode Status, JsonElement Body, string? Session, string? Csrf, string[] Cookies)> LoginAsync(string user, string password,
        string? code = null, string? from = null)
    {
        using var response = await SendAsync(HttpMethod.Post, "/api/v1/session/login", new { user, password, code }, from: from);
        var body = await TestServer.ReadJsonAsync(response);
        var cookies = response.Headers.TryGetValues("Set-Cookie", out var values) ? values.ToArray() : [];
        string? Value(string name) => cookies.FirstOrDefault(c => c.StartsWith(name + "=", StringComparison.Ordinal))?.Split(';')[0][(name.Length + 1)..];
        return (response.StatusCode, body, Value("conveyor_session"), Value("conveyor_csrf"), cookies);
    }

    private static string Code(DateTime at) => new Totp(Base32Encoding.ToBytes(Secret)).ComputeTotp(at);

    private async Task<List<string>> AuditActionsAsync(string target)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/audit?limit=500");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        using var response = await _server.Client.SendAsync(request);
        var body = await TestServer.ReadJsonAsync(response);
        return [.. body.GetProperty("entries").EnumerateArray()
            .Where(e => e.TryGetProperty("target", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == target)
            .Select(e => e.GetProperty("action").GetString()!)];
    }

    [Fact]
    public async Task A_read_user_signs_in_with_a_password_gets_a_strict_cookie_reads_and_is_refused_admin_actions()
    {
        await AddAsync("reader", "read");

        var (status, body, session, csrf, cookies) = await LoginAsync("reader", Password);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(body.GetProperty("authenticated").GetBoolean());
        Assert.Equal(["read"], body.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        var cookie = cookies.Single(c => c.StartsWith("conveyor_session=", StringComparison.Ordinal)).ToLowerInvariant();
        Assert.Contains("; secure", cookie, StringComparison.Ordinal);
        Assert.Contains("; httponly", cookie, StringComparison.Ordinal);
        Assert.Contains("; samesite=strict", cookie, StringComparison.Ordinal);
        using var read = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: session);
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        using var pause = await SendAsync(HttpMethod.Post, "/api/v1/queues/default/pause", session: session, csrf: csrf);
        Assert.Equal(HttpStatusCode.Forbidden, pause.StatusCode);
        Assert.Contains("session.sign-in", await AuditActionsAsync("reader"));
    }

    [Fact]
    public async Task A_wrong_password_and_an_unknown_user_get_the_same_401()
    {
        await AddAsync("alice", "read");

        var wrong = await LoginAsync("alice", "not the password at all");
        var unknown = await LoginAsync("nobody", Password);

        Assert.Equal(HttpStatusCode.Unauthorized, wrong.Status);
        Assert.Equal(HttpStatusCode.Unauthorized, unknown.Status);
        Assert.Null(wrong.Session);
        Assert.Equal(wrong.Body.GetProperty("detail").GetString(), unknown.Body.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task After_max_failures_the_right_password_is_refused_until_the_lock_ends()
    {
        await AddAsync("carol", "read");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("carol", "wrong password " + i)).Status);
        }

        var locked = await LoginAsync("carol", Password);

        Assert.Equal(HttpStatusCode.Unauthorized, locked.Status);
        Assert.Null(locked.Session);
        var stored = await Users.GetUserAsync("carol", CancellationToken.None);
        Assert.True(stored!.LockedUntil > DateTimeOffset.UtcNow.AddMinutes(14));
        Assert.Contains("user.locked-out", await AuditActionsAsync("carol"));
        // Lifting the lock (as `conveyor users passwd` does) lets the user in again.
        Assert.True(await Users.UpdateUserAsync(stored with { LockedUntil = null }, CancellationToken.None));
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync("carol", Password)).Status);
    }

    [Fact]
    public async Task An_enrolled_user_needs_a_TOTP_code_which_is_accepted_once()
    {
        await AddAsync("dave", "enqueue", mfa: true);

        var first = await LoginAsync("dave", Password);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.True(first.Body.GetProperty("codeRequired").GetBoolean());
        Assert.Null(first.Session);
        var now = DateTime.UtcNow;
        var valid = new[] { Code(now.AddSeconds(-30)), Code(now), Code(now.AddSeconds(30)) };
        var wrong = Enumerable.Range(0, 4).Select(i => $"{i}{i}{i}{i}{i}{i}").First(c => !valid.Contains(c));
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("dave", Password, wrong)).Status);

        var code = Code(DateTime.UtcNow);
        var signedIn = await LoginAsync("dave", Password, code);
        Assert.Equal(HttpStatusCode.OK, signedIn.Status);
        Assert.NotNull(signedIn.Session);
        Assert.Equal(["enqueue", "read"], signedIn.Body.GetProperty("scopes").EnumerateArray().Select(e => e.GetString()).Order(StringComparer.Ordinal));

        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("dave", Password, code)).Status);
    }

    [Fact]
    public async Task A_recovery_code_signs_in_once()
    {
        await AddAsync("erin", "read", mfa: true, recoveryCodes: ["abcde-fghjk", "mnpqr-stuvw"]);

        Assert.Equal(HttpStatusCode.OK, (await LoginAsync("erin", Password, "abcde-fghjk")).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("erin", Password, "abcde-fghjk")).Status);

        Assert.Equal([UserCredentials.HashRecoveryCode("mnpqr-stuvw")], (await Users.GetUserAsync("erin", CancellationToken.None))!.RecoveryCodes);
        Assert.Contains("user.recovery-code-used", await AuditActionsAsync("erin"));
    }

    [Fact]
    public async Task An_admin_off_loopback_without_MFA_may_only_enrol_and_then_gets_full_scopes_and_ten_recovery_codes()
    {
        await AddAsync("root", "admin");

        var signedIn = await LoginAsync("root", Password, from: OffLoopback);
        Assert.Equal(HttpStatusCode.OK, signedIn.Status);
        Assert.True(signedIn.Body.GetProperty("enrolmentRequired").GetBoolean());
        Assert.Empty(signedIn.Body.GetProperty("scopes").EnumerateArray());
        using (var refused = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: signedIn.Session, from: OffLoopback))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        using var enrol = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/enrol", new { }, signedIn.Session, signedIn.Csrf, OffLoopback);
        Assert.Equal(HttpStatusCode.OK, enrol.StatusCode);
        var enrolment = await TestServer.ReadJsonAsync(enrol);
        var secret = enrolment.GetProperty("secret").GetString()!;
        Assert.StartsWith("otpauth://totp/", enrolment.GetProperty("uri").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("<svg", enrolment.GetProperty("qrSvg").GetString()!.TrimStart(), StringComparison.Ordinal);

        var code = new Totp(Base32Encoding.ToBytes(secret)).ComputeTotp(DateTime.UtcNow);
        using var confirm = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/confirm", new { code }, signedIn.Session, signedIn.Csrf, OffLoopback);
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        var confirmed = await TestServer.ReadJsonAsync(confirm);
        Assert.Equal(10, confirmed.GetProperty("recoveryCodes").GetArrayLength());
        var session = confirm.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("conveyor_session=", StringComparison.Ordinal)).Split(';')[0]["conveyor_session=".Length..];

        using var allowed = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: session, from: OffLoopback);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        using var oldSession = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: signedIn.Session, from: OffLoopback);
        Assert.Equal(HttpStatusCode.Unauthorized, oldSession.StatusCode);
        Assert.Contains("user.mfa-enrol", await AuditActionsAsync("root"));
    }

    [Fact]
    public async Task An_admin_on_loopback_without_MFA_gets_the_admin_scope()
    {
        await AddAsync("local", "admin");

        var signedIn = await LoginAsync("local", Password);

        Assert.False(signedIn.Body.GetProperty("enrolmentRequired").GetBoolean());
        Assert.Equal(["admin"], signedIn.Body.GetProperty("scopes").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task A_loopback_admin_session_without_MFA_replayed_from_elsewhere_is_no_session()
    {
        await AddAsync("console", "admin");
        var signedIn = await LoginAsync("console", Password);

        using (var local = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: signedIn.Session))
        {
            Assert.Equal(HttpStatusCode.OK, local.StatusCode);
        }
        using (var replayed = await SendAsync(HttpMethod.Get, "/api/v1/queues", session: signedIn.Session, from: OffLoopback))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, replayed.StatusCode);
        }
        // Not even enrolment: whoever holds the cookie must not set their own second factor without the password.
        using var enrol = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/enrol", new { }, signedIn.Session, signedIn.Csrf, OffLoopback);
        Assert.Equal(HttpStatusCode.Unauthorized, enrol.StatusCode);
        Assert.Null((await Users.GetUserAsync("console", CancellationToken.None))!.MfaSecret);
    }

    [Fact]
    public async Task A_forwarded_request_that_names_a_loopback_client_is_not_loopback()
    {
        await AddAsync("proxied", "admin");

        // Behind a proxy that passes the client's own X-Forwarded-For through, the client could claim 127.0.0.1.
        var signedIn = await LoginAsync("proxied", Password, from: "127.0.0.1");

        Assert.Equal(HttpStatusCode.OK, signedIn.Status);
        Assert.True(signedIn.Body.GetProperty("enrolmentRequired").GetBoolean());
        Assert.Empty(signedIn.Body.GetProperty("scopes").EnumerateArray());
    }

    [Fact]
    public async Task A_user_enrols_by_choice_then_renews_recovery_codes_with_a_TOTP_code_only()
    {
        await AddAsync("frank", "read");
        var signedIn = await LoginAsync("frank", Password);
        using (var me = await SendAsync(HttpMethod.Get, "/api/v1/session/me", session: signedIn.Session))
        {
            var body = await TestServer.ReadJsonAsync(me);
            Assert.Equal("frank", body.GetProperty("user").GetString());
            Assert.False(body.GetProperty("mfaEnabled").GetBoolean());
        }
        using var enrol = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/enrol", new { }, signedIn.Session, signedIn.Csrf);
        var secret = (await TestServer.ReadJsonAsync(enrol)).GetProperty("secret").GetString()!;
        var totp = new Totp(Base32Encoding.ToBytes(secret));
        var stepNow = DateTime.UtcNow;
        using var confirm = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/confirm", new { code = totp.ComputeTotp(stepNow) }, signedIn.Session, signedIn.Csrf);
        Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
        var firstCodes = (await TestServer.ReadJsonAsync(confirm)).GetProperty("recoveryCodes").EnumerateArray().Select(c => c.GetString()!).ToList();
        var session = confirm.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("conveyor_session=", StringComparison.Ordinal)).Split(';')[0]["conveyor_session=".Length..];
        var csrf = confirm.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("conveyor_csrf=", StringComparison.Ordinal)).Split(';')[0]["conveyor_csrf=".Length..];

        // A recovery code cannot renew the codes; without the CSRF token nothing is renewed either.
        using (var withRecovery = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/recovery-codes", new { code = firstCodes[0] }, session, csrf))
        {
            Assert.Equal(HttpStatusCode.UnprocessableEntity, withRecovery.StatusCode);
            Assert.Contains("code", (await TestServer.ReadJsonAsync(withRecovery)).GetProperty("errors").GetRawText(), StringComparison.Ordinal);
        }
        using (var noCsrf = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/recovery-codes", new { code = totp.ComputeTotp(stepNow.AddSeconds(30)) }, session))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, noCsrf.StatusCode);
        }
        // The confirmation spent this step's code: the next step's is accepted (one step ahead is within the window).
        using var renew = await SendAsync(HttpMethod.Post, "/api/v1/session/mfa/recovery-codes", new { code = totp.ComputeTotp(stepNow.AddSeconds(30)) }, session, csrf);
        Assert.Equal(HttpStatusCode.OK, renew.StatusCode);
        var renewed = (await TestServer.ReadJsonAsync(renew)).GetProperty("recoveryCodes").EnumerateArray().Select(c => c.GetString()!).ToList();
        Assert.Equal(10, renewed.Count);
        Assert.Empty(renewed.Intersect(firstCodes));

        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("frank", Password, firstCodes[1])).Status);
        Assert.Equal(HttpStatusCode.OK, (await LoginAsync("frank", Password, renewed[0])).Status);
        Assert.Contains("user.recovery-codes-renewed", await AuditActionsAsync("frank"));
    }

    [Fact]
    public async Task Concurrent_sign_ins_with_one_recovery_code_let_exactly_one_in()
    {
        await AddAsync("grace", "read", mfa: true, recoveryCodes: ["abcde-fghjk", "mnpqr-stuvw"]);

        var attempts = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => LoginAsync("grace", Password, "abcde-fghjk")));

        Assert.Equal(1, attempts.Count(a => a.Status == HttpStatusCode.OK));
        Assert.Equal(7, attempts.Count(a => a.Status == HttpStatusCode.Unauthorized));
        Assert.Equal([UserCredentials.HashRecoveryCode("mnpqr-stuvw")], (await Users.GetUserAsync("grace", CancellationToken.None))!.RecoveryCodes);
    }

    [Fact]
    public async Task Concurrent_wrong_passwords_are_each_counted_and_lock_the_user()
    {
        await AddAsync("heidi", "read");

        // MaxFailures is 3: of 3 concurrent failures none may be lost to a concurrent update, so the user is locked.
        var attempts = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => LoginAsync("heidi", "wrong password " + i)));

        Assert.All(attempts, a => Assert.Equal(HttpStatusCode.Unauthorized, a.Status));
        Assert.NotNull((await Users.GetUserAsync("heidi", CancellationToken.None))!.LockedUntil);
        Assert.Equal(HttpStatusCode.Unauthorized, (await LoginAsync("heidi", Password)).Status);
    }

    [Fact]
    public async Task With_an_encryption_key_the_TOTP_secret_is_stored_encrypted_and_still_signs_in()
    {
        await using var server = await TestServer.StartAsync(new Dictionary<string, string?>
        {
            ["Conveyor:ApiKeys"] = AdminKey,
            ["Conveyor:Encryption:Key"] = "k1:" + Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()),
        });
        var backend = (Conveyor.Encryption.EncryptingBackend)server.Service<IConveyorBackend>();
        Assert.True(await backend.Users!.AddUserAsync(new StoredUser("ivan", "read", UserCredentials.HashPassword(Password), DateTimeOffset.UtcNow,
            MfaSecret: Secret, MfaEnabled: true), CancellationToken.None));

        var raw = (await backend.Inner.Users!.GetUserAsync("ivan", CancellationToken.None))!.MfaSecret!;
        Assert.StartsWith("cv1.k1.", raw, StringComparison.Ordinal);
        Assert.DoesNotContain(Secret, raw, StringComparison.Ordinal);
        Assert.Equal(Secret, (await backend.Users.GetUserAsync("ivan", CancellationToken.None))!.MfaSecret);
        // Moved onto another user, it does not decrypt: no code matches it.
        Assert.True(await backend.Inner.Users.AddUserAsync(new StoredUser("mallory", "read", UserCredentials.HashPassword(Password), DateTimeOffset.UtcNow,
            MfaSecret: raw, MfaEnabled: true), CancellationToken.None));

        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        async Task<HttpStatusCode> SignIn(string user)
        {
            using var body = new StringContent(JsonSerializer.Serialize(new { user, password = Password, code = Code(DateTime.UtcNow) }), Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/api/v1/session/login", body);
            return response.StatusCode;
        }
        Assert.Equal(HttpStatusCode.OK, await SignIn("ivan"));
        Assert.Equal(HttpStatusCode.Unauthorized, await SignIn("mallory"));
    }

    [Theory]
    [InlineData("Conveyor:Users:MaxFailures", "0")]
    [InlineData("Conveyor:Users:LockoutDuration", "00:00:00")]
    [InlineData("Conveyor:Users:MinPasswordLength", "4")]
    public async Task A_bad_user_setting_stops_the_start_with_an_error_naming_it(string setting, string value)
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => TestServer.StartAsync(new Dictionary<string, string?> { [setting] = value }));

        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
    }
}
