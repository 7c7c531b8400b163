using System.Globalization;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// The keys of the configuration: <see cref="ConveyorApiOptions.ApiKeys"/> (admin) and the lines of
/// <see cref="ConveyorApiOptions.ApiKeyFile"/>: one key a line, optionally followed by <c>scopes=read,enqueue</c> and
/// <c>queues=emails,reports</c> (admin on every queue without them); blank lines and lines starting with <c>#</c> are skipped.
/// </summary>
internal static class ConfiguredApiKeys
{
    /// <summary>The configured keys. Throws <see cref="InvalidOperationException"/> naming the setting (never the key) when
    /// one is too short, the file cannot be read, or a line is malformed.</summary>
    public static IReadOnlyList<ApiCaller> Read(ConveyorApiOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var keys = new List<ApiCaller>();
        var index = 0;
        foreach (var raw in options.ApiKeys)
        {
            var key = raw?.Trim() ?? "";
            if (key.Length > 0)
            {
                keys.Add(Caller(key, [ApiScopes.Admin], [], $"Conveyor:ApiKeys:{index} (CONVEYOR_API_KEYS, item {index + 1})"));
            }
            index++;
        }
        if (!string.IsNullOrWhiteSpace(options.ApiKeyFile))
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(options.ApiKeyFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"Conveyor:ApiKeyFile (CONVEYOR_API_KEY_FILE, --api-key-file) '{options.ApiKeyFile}' cannot be read: {ex.Message}", ex);
            }
            for (var i = 0; i < lines.Length; i++)
            {
                var line = lines[i].Trim();
                if (line.Length == 0 || line.StartsWith('#'))
                {
                    continue;
                }
                keys.Add(ParseLine(line, $"Conveyor:ApiKeyFile '{options.ApiKeyFile}' line {(i + 1).ToString(CultureInfo.InvariantCulture)}"));
            }
        }
        return keys;
    }

    private static ApiCaller ParseLine(string line, string where)
    {
        var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        string[] scopes = [ApiScopes.Admin];
        string[] queues = [];
        foreach (var part in parts.Skip(1))
        {
            if (part.StartsWith("scopes=", StringComparison.Ordinal))
            {
                scopes = part["scopes=".Length..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (scopes.Length == 0 || scopes.Any(s => !ApiScopes.IsScope(s)))
                {
                    throw new InvalidOperationException($"{where}: scopes must list one or more of {string.Join(", ", ApiScopes.All)}.");
                }
            }
            else if (part.StartsWith("queues=", StringComparison.Ordinal))
            {
                queues = part["queues=".Length..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            }
            else
            {
                throw new InvalidOperationException($"{where}: after the key, only 'scopes=read,enqueue,admin' and 'queues=name,…' are accepted.");
            }
        }
        return Caller(parts[0], scopes, queues, where);
    }

    private static ApiCaller Caller(string key, string[] scopes, string[] queues, string where)
    {
        if (key.Length < ApiKeyFormat.MinimumLength)
        {
            throw new InvalidOperationException(
                $"{where} is an API key of {key.Length.ToString(CultureInfo.InvariantCulture)} characters; a key needs at least {ApiKeyFormat.MinimumLength.ToString(CultureInfo.InvariantCulture)}. " +
                "Generate one with 'conveyor keys create' or 'openssl rand -base64 32'.");
        }
        var hash = ApiKeyFormat.Hash(key);
        return new ApiCaller("config-" + Convert.ToHexStringLower(hash)[..8], "", scopes.ToHashSet(StringComparer.Ordinal), queues.ToHashSet(StringComparer.Ordinal), hash);
    }
}
