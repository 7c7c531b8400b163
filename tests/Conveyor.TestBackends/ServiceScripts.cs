using System.Diagnostics;

namespace Conveyor.TestBackends;

/// <summary>The repository's service scripts (<c>scripts/services/*.sh</c>), which start and drive the test servers.</summary>
public static class ServiceScripts
{
    /// <summary>The repository's root (the folder of Conveyor.slnx) above the test's output folder.</summary>
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>Runs <c>scripts/services/<paramref name="service"/>.sh</c> with <paramref name="arguments"/> and returns
    /// what it printed; a failure (or 120 s without an end) throws with what it printed on standard error.</summary>
    public static async Task<string> RunAsync(string service, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        var info = new ProcessStartInfo("bash", [Path.Combine(RepositoryRoot, "scripts", "services", service + ".sh"), .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{service}.sh {string.Join(' ', info.ArgumentList.Skip(1))} failed ({process.ExitCode}): {await error.ConfigureAwait(false)}");
        }
        return await output.ConfigureAwait(false);
    }

    private static string FindRepositoryRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Conveyor.slnx")))
        {
            root = root.Parent;
        }
        return root?.FullName ?? throw new InvalidOperationException($"no Conveyor.slnx above {AppContext.BaseDirectory}");
    }
}
