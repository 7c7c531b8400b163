namespace Conveyor.Server.Cli.Doctor;

/// <summary>
/// Replaces every secret of the configuration with <c>***</c> in the messages of other code that <c>conveyor doctor</c>
/// quotes (a driver's connection error, a start-up refusal): its own text never holds one, and those might.
/// </summary>
internal sealed class SecretRedactor
{
    /// <summary>Shorter values are not replaced: they would match ordinary words, and a secret that short is guessed anyway.</summary>
    private const int MinimumLength = 4;

    /// <summary>The configuration keys whose values are secrets.</summary>
    internal static readonly string[] SecretKeys = ["Conveyor:Encryption:Key", "Conveyor:Tls:Password", "Conveyor:SessionSecret"];

    /// <summary>The configuration keys whose values are URLs that may hold a password.</summary>
    internal static readonly string[] UrlKeys = ["Conveyor:DatabaseUrl", "Conveyor:RedisUrl", "Conveyor:AmqpUrl"];

    private readonly List<string> _secrets;

    private SecretRedactor(IEnumerable<string> secrets)
    {
        // Longest first, so that a secret holding another is replaced whole.
        _secrets = [.. secrets.Where(s => s.Length >= MinimumLength).Distinct(StringComparer.Ordinal).OrderByDescending(s => s.Length)];
    }

    /// <summary>The secrets in every source of <paramref name="configuration"/> (overridden values too), and the CLI's
    /// <c>CONVEYOR_API_KEY</c> of <paramref name="environment"/>.</summary>
    public static SecretRedactor From(IConfigurationRoot configuration, IReadOnlyDictionary<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(environment);
        var secrets = new List<string>();
        foreach (var provider in configuration.Providers)
        {
            foreach (var index in provider.GetChildKeys([], "Conveyor:ApiKeys"))
            {
                if (provider.TryGet("Conveyor:ApiKeys:" + index, out var key) && key is not null)
                {
                    secrets.Add(key.Trim());
                }
            }
            foreach (var name in SecretKeys)
            {
                if (provider.TryGet(name, out var value) && value is not null)
                {
                    secrets.Add(value.Trim());
                    // An encryption key given as id:base64: the base64 alone is the secret too.
                    if (value.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
                    {
                        secrets.Add(value[(colon + 1)..].Trim());
                    }
                }
            }
            foreach (var name in UrlKeys)
            {
                if (provider.TryGet(name, out var url) && UrlPassword(url) is { } password)
                {
                    secrets.Add(password);
                    secrets.Add(Uri.UnescapeDataString(password));
                }
            }
        }
        if (environment.TryGetValue("CONVEYOR_API_KEY", out var cliKey) && cliKey is not null)
        {
            secrets.Add(cliKey.Trim());
        }
        return new SecretRedactor(secrets);
    }

    /// <summary>The password of a URL's user information (<c>scheme://user:password@host</c>, as written, not unescaped),
    /// or of a StackExchange.Redis configuration string (<c>host,password=…</c>); null when there is none.</summary>
    public static string? UrlPassword(string? url)
    {
        if (string.IsNullOrWhiteSpace(url))
        {
            return null;
        }
        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        var at = url.LastIndexOf('@');
        if (scheme >= 0 && at > scheme)
        {
            var userInfo = url[(scheme + 3)..at];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            // redis://password@host (no colon) is a password alone, as RedisUrl reads it.
            var password = colon < 0 ? (url.StartsWith("redis", StringComparison.OrdinalIgnoreCase) ? userInfo : "") : userInfo[(colon + 1)..];
            return password.Length > 0 ? password : null;
        }
        var option = url.IndexOf("password=", StringComparison.OrdinalIgnoreCase);
        if (scheme < 0 && option >= 0)
        {
            var end = url.IndexOf(',', option);
            var password = url[(option + "password=".Length)..(end < 0 ? url.Length : end)];
            return password.Length > 0 ? password : null;
        }
        return null;
    }

    /// <summary><paramref name="text"/> with every secret replaced by <c>***</c>.</summary>
    public string Redact(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var secret in _secrets)
        {
            text = text.Replace(secret, "***", StringComparison.Ordinal);
        }
        return text;
    }
}
