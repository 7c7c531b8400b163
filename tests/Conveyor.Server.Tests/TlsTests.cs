using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Conveyor.Server.Configuration;
using Conveyor.Server.Hosting;

namespace Conveyor.Server.Tests;

/// <summary>A self-signed server certificate made for one test (ECDSA P-256, for <c>localhost</c>, <c>127.0.0.1</c> and
/// <c>conveyor.test</c>), written as the files an operator would give the server.</summary>
public sealed class TestCertificate : IDisposable
{
    public const string Password = "test-password-not-a-secret";

    private TestCertificate(string folder, X509Certificate2 certificate)
    {
        Folder = folder;
        Certificate = certificate;
    }

    /// <summary>The certificate without its key: what a client trusts.</summary>
    public X509Certificate2 Certificate { get; }

    public string Folder { get; }
    public string CertificateFile => Path.Combine(Folder, "cert.pem");
    public string KeyFile => Path.Combine(Folder, "key.pem");
    public string EncryptedKeyFile => Path.Combine(Folder, "key.encrypted.pem");
    public string PfxFile => Path.Combine(Folder, "cert.pfx");
    public string PasswordFile => Path.Combine(Folder, "password");

    public static TestCertificate Create(string folder, string subject = "CN=conveyor-test")
    {
        Directory.CreateDirectory(folder);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddDnsName("conveyor.test");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1", "Server Authentication")], critical: false));
        using var withKey = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var certificate = new TestCertificate(folder, X509CertificateLoader.LoadCertificate(withKey.RawData));
        File.WriteAllText(certificate.CertificateFile, withKey.ExportCertificatePem());
        File.WriteAllText(certificate.KeyFile, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(certificate.EncryptedKeyFile, key.ExportEncryptedPkcs8PrivateKeyPem(Password,
            new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 10_000)));
        File.WriteAllBytes(certificate.PfxFile, withKey.Export(X509ContentType.Pkcs12, Password));
        File.WriteAllText(certificate.PasswordFile, Password + "\n");
        return certificate;
    }

    /// <summary>A client that trusts this certificate alone (a chain built to it as the only root, the name checked), and
    /// records the certificate the server presented.</summary>
    public HttpClient CreateTrustingClient(Uri baseAddress, List<X509Certificate2>? presented = null)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions =
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is not X509Certificate2 server || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
                    {
                        return false;
                    }
                    if (presented is not null)
                    {
                        lock (presented)
                        {
                            presented.Add(X509CertificateLoader.LoadCertificate(server.RawData));
                        }
                    }
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(Certificate);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return chain.Build(server);
                },
            },
        };
        return new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public void Dispose() => Certificate.Dispose();
}

/// <summary>HTTPS served by a real <c>conveyor server</c> process from the certificate files of <c>--tls-cert</c> and
/// <c>--tls-key</c>, and the start refused (exit 2, the setting named) for settings that cannot work.</summary>
public sealed class HttpsServerTests : IDisposable
{
    private readonly string _folder = TempFolder.Create();

    private Dictionary<string, string> Environment => new()
    {
        ["DATABASE_URL"] = "sqlite:///" + Path.Combine(_folder, "tls.db"),
        ["LOG_LEVEL"] = "warning",
    };

    public void Dispose() => TempFolder.Delete(_folder);

    [Fact]
    public async Task Server_serves_https_with_the_pem_certificate_to_a_client_that_trusts_it_and_sends_hsts()
    {
        using var certificate = TestCertificate.Create(Path.Combine(_folder, "tls"));
        using var server = await ServerProcess.StartAsync(_folder, Environment,
            "--port", "0", "--tls-cert", certificate.CertificateFile, "--tls-key", certificate.KeyFile, "--allowed-hosts", "conveyor.test");
        var presented = new List<X509Certificate2>();
        using var client = certificate.CreateTrustingClient(server.Url, presented);

        using var live = await client.GetAsync("/health/live");
        using var queues = await client.GetAsync("/api/v1/queues");
        using var named = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queues") { Headers = { Host = "conveyor.test" } };
        using var hsts = await client.SendAsync(named);

        Assert.Equal("https", server.Url.Scheme);
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal(HttpStatusCode.OK, queues.StatusCode);
        Assert.Contains(presented, c => c.Thumbprint == certificate.Certificate.Thumbprint);
        // HSTS on HTTPS answers, but not to the loopback names (a browser would then insist on HTTPS for every local app).
        Assert.Equal(HttpStatusCode.OK, hsts.StatusCode);
        Assert.Equal("max-age=31536000", Assert.Single(hsts.Headers.GetValues("Strict-Transport-Security")));
        Assert.False(queues.Headers.Contains("Strict-Transport-Security"));
        foreach (var seen in presented)
        {
            seen.Dispose();
        }
    }

    [Fact]
    public async Task Https_port_does_not_answer_plain_http()
    {
        using var certificate = TestCertificate.Create(Path.Combine(_folder, "tls"));
        using var server = await ServerProcess.StartAsync(_folder, Environment, "--port", "0", "--tls-cert", certificate.CertificateFile, "--tls-key", certificate.KeyFile);
        using var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

        var answer = await Record.ExceptionAsync(async () =>
        {
            using var response = await plain.GetAsync(new UriBuilder(server.Url) { Scheme = "http", Path = "/health/live" }.Uri);
            Assert.False(response.IsSuccessStatusCode, $"plain HTTP answered {(int)response.StatusCode}");
        });

        Assert.True(answer is HttpRequestException or null, answer?.ToString());
        Assert.False(server.Process.HasExited);
    }

    [Fact]
    public async Task A_missing_certificate_file_exits_two_naming_the_setting()
    {
        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, Environment,
            "server", "--port", "0", "--tls-cert", Path.Combine(_folder, "missing.pem"), "--tls-key", Path.Combine(_folder, "missing.key"));

        Assert.Equal(2, exitCode);
        Assert.Contains("--tls-cert", error, StringComparison.Ordinal);
        Assert.Contains("missing.pem' does not exist", error, StringComparison.Ordinal);
        Assert.DoesNotContain("Conveyor serving", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Off_loopback_without_tls_or_a_proxy_exits_two_naming_the_settings()
    {
        var environment = new Dictionary<string, string>(Environment) { ["CONVEYOR_API_KEYS"] = "tls-test-key-0123456789abcdefghijklmnop" };

        var (exitCode, output, error) = await ConveyorProcess.RunAsync(_folder, environment, "server", "--host", "0.0.0.0", "--port", "0");

        Assert.Equal(2, exitCode);
        Assert.Contains("Refusing to listen on http://0.0.0.0:0 without TLS", error, StringComparison.Ordinal);
        foreach (var setting in new[] { "CONVEYOR_TLS__CERTIFICATE_FILE", "--tls-cert", "--tls-key", "CONVEYOR_BEHIND_PROXY", "--behind-proxy", "CONVEYOR_KNOWN_PROXIES" })
        {
            Assert.Contains(setting, error, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("Conveyor serving", output, StringComparison.Ordinal);
    }
}

/// <summary>Certificate settings are checked when the server is built, before anything listens; each problem names its
/// setting, never a password.</summary>
public sealed class TlsConfigurationTests : IDisposable
{
    private const string Key = "tls-test-key-0123456789abcdefghijklmnop";
    private readonly string _folder = TempFolder.Create();
    private readonly TestCertificate _certificate;

    public TlsConfigurationTests()
    {
        _certificate = TestCertificate.Create(Path.Combine(_folder, "tls"));
    }

    public void Dispose()
    {
        _certificate.Dispose();
        TempFolder.Delete(_folder);
    }

    private ConveyorConfigurationException Refused(Dictionary<string, string?> flags, Dictionary<string, string?>? environment = null)
    {
        flags["Conveyor:Port"] = "0";
        flags["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(_folder, "c.db");
        return Assert.Throws<ConveyorConfigurationException>(() => ConveyorHosts.BuildServer(flags, environment ?? new Dictionary<string, string?>()));
    }

    /// <summary>Builds the server (it is not started) and returns the URL Kestrel would bind.</summary>
    private async Task<string?> BuildsAsync(Dictionary<string, string?> flags, Dictionary<string, string?>? environment = null)
    {
        flags["Conveyor:Port"] = "0";
        flags["Conveyor:DatabaseUrl"] = "sqlite:///" + Path.Combine(_folder, "c.db");
        await using var app = ConveyorHosts.BuildServer(flags, environment ?? new Dictionary<string, string?>());
        return app.Configuration["urls"];
    }

    [Fact]
    public void A_certificate_without_a_key_is_refused_naming_the_key_setting()
    {
        var exception = Refused(new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile });

        Assert.Contains("holds no private key", exception.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Tls:KeyFile (CONVEYOR_TLS__KEY_FILE, --tls-key)", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_file_that_is_not_a_key_is_refused_naming_it()
    {
        var garbage = Path.Combine(_folder, "garbage.pem");
        File.WriteAllText(garbage, "not a key\n");

        var exception = Refused(new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = garbage });

        Assert.Contains($"Conveyor:Tls:KeyFile (CONVEYOR_TLS__KEY_FILE, --tls-key) '{garbage}' holds no PEM private key", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_key_of_another_certificate_is_refused_naming_the_key_setting()
    {
        using var other = TestCertificate.Create(Path.Combine(_folder, "other"));

        var exception = Refused(new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = other.KeyFile });

        Assert.Contains($"'{other.KeyFile}' does not hold the key of the certificate", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_path_that_is_a_folder_is_refused_naming_the_setting()
    {
        var exception = Refused(new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = _folder });

        Assert.Contains($"Conveyor:Tls:KeyFile (CONVEYOR_TLS__KEY_FILE, --tls-key) '{_folder}' is a folder, not a file", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_without_a_certificate_is_refused()
    {
        var exception = Refused(new() { ["Conveyor:Tls:KeyFile"] = _certificate.KeyFile });

        Assert.Contains("without a certificate", exception.Message, StringComparison.Ordinal);
        Assert.Contains("--tls-cert", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_encrypted_key_needs_its_password_and_a_wrong_one_is_refused_without_showing_it()
    {
        var withoutPassword = Refused(new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = _certificate.EncryptedKeyFile });
        var wrongPassword = Refused(
            new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = _certificate.EncryptedKeyFile },
            new() { ["CONVEYOR_TLS__PASSWORD"] = "wrong-password-xyz" });

        Assert.Contains("is an encrypted key: set its password in Conveyor:Tls:Password (CONVEYOR_TLS__PASSWORD)", withoutPassword.Message, StringComparison.Ordinal);
        Assert.Contains("could not be decrypted with the configured password", wrongPassword.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-password-xyz", wrongPassword.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pfx_with_a_wrong_password_is_refused_naming_the_password_settings()
    {
        var exception = Refused(
            new() { ["Conveyor:Tls:CertificateFile"] = _certificate.PfxFile },
            new() { ["CONVEYOR_TLS__PASSWORD"] = "wrong-password-xyz" });

        Assert.Contains("could not be read as a PEM certificate or a PKCS#12 (PFX) file", exception.Message, StringComparison.Ordinal);
        Assert.Contains("CONVEYOR_TLS__PASSWORD_FILE", exception.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("wrong-password-xyz", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pfx_with_its_password_file_or_an_encrypted_key_with_its_password_builds_an_https_server()
    {
        var pfx = await BuildsAsync(new()
        {
            ["Conveyor:Tls:CertificateFile"] = _certificate.PfxFile,
            ["Conveyor:Tls:PasswordFile"] = _certificate.PasswordFile,
        });
        var encrypted = await BuildsAsync(
            new() { ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = _certificate.EncryptedKeyFile },
            new() { ["CONVEYOR_TLS__PASSWORD"] = TestCertificate.Password });

        Assert.Equal("https://127.0.0.1:0", pfx);
        Assert.Equal("https://127.0.0.1:0", encrypted);
    }

    [Fact]
    public async Task Off_loopback_with_a_certificate_or_behind_a_proxy_builds()
    {
        var tls = await BuildsAsync(
            new() { ["Conveyor:Host"] = "0.0.0.0", ["Conveyor:Tls:CertificateFile"] = _certificate.CertificateFile, ["Conveyor:Tls:KeyFile"] = _certificate.KeyFile },
            new() { ["CONVEYOR_API_KEYS"] = Key });
        var proxied = await BuildsAsync(new() { ["Conveyor:Host"] = "0.0.0.0" }, new() { ["CONVEYOR_API_KEYS"] = Key, ["CONVEYOR_BEHIND_PROXY"] = "true" });

        Assert.Equal("https://0.0.0.0:0", tls);
        Assert.Equal("http://0.0.0.0:0", proxied);
    }

    [Fact]
    public void Behind_a_proxy_needs_api_keys_even_on_loopback()
    {
        var exception = Refused(new() { ["Conveyor:BehindProxy"] = "true" });

        Assert.Contains("Conveyor:BehindProxy (CONVEYOR_BEHIND_PROXY, --behind-proxy) is set without API keys", exception.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("10.0.0.0/x")]
    [InlineData("proxy.internal")]
    [InlineData("10.0.0.0/33")]
    public void A_known_proxy_that_is_not_an_address_or_network_is_refused_naming_it(string entry)
    {
        var exception = Refused(new() { ["Conveyor:BehindProxy"] = "true", ["Conveyor:KnownProxies"] = "127.0.0.1," + entry }, new() { ["CONVEYOR_API_KEYS"] = Key });

        Assert.Contains($"Conveyor:KnownProxies (CONVEYOR_KNOWN_PROXIES, --known-proxies) entry '{entry}'", exception.Message, StringComparison.Ordinal);
    }
}
