using System.Reflection;
using System.Security.Cryptography;

namespace Conveyor.Dashboard;

/// <summary>The built single-page app (client/dist, embedded in this assembly as <c>wwwroot/…</c>), read once.</summary>
internal sealed class DashboardAssets
{
    private const string Prefix = "wwwroot/";

    private DashboardAssets(Dictionary<string, Asset> files) => Files = files;

    /// <summary>Files by name (<c>app.js</c>, <c>style.css</c>), without <c>index.html</c>.</summary>
    public IReadOnlyDictionary<string, Asset> Files { get; }

    /// <summary>The page, with <c>%BASE%</c> and <c>%API%</c> to fill per request.</summary>
    public string IndexTemplate { get; private set; } = "";

    public static DashboardAssets Load()
    {
        var assembly = typeof(DashboardAssets).Assembly;
        var files = new Dictionary<string, Asset>(StringComparer.Ordinal);
        string? index = null;
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            var bytes = Read(assembly, name);
            var file = name[Prefix.Length..];
            if (file == "index.html")
            {
                index = System.Text.Encoding.UTF8.GetString(bytes);
                continue;
            }
            files[file] = new Asset(bytes, ContentType(file), $"\"{Convert.ToHexStringLower(SHA256.HashData(bytes))[..16]}\"");
        }
        // The build embeds the bundle (see Conveyor.Dashboard.csproj); without it the assembly was built wrongly.
        return new DashboardAssets(files)
        {
            IndexTemplate = index ?? throw new InvalidOperationException("Conveyor.Dashboard was built without its single-page app (wwwroot/index.html is not embedded)."),
        };
    }

    private static byte[] Read(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private static string ContentType(string file) => Path.GetExtension(file) switch
    {
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        ".json" => "application/json",
        _ => "application/octet-stream",
    };

    /// <summary>One static file.</summary>
    internal sealed record Asset(byte[] Content, string ContentType, string ETag);
}
