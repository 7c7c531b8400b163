namespace Conveyor.Server.Cli.Doctor;

/// <summary>How an item of the security checklist stands, from least to most severe: an item's status is its worst
/// finding's.</summary>
internal enum CheckStatus
{
    /// <summary>The item does not apply to this configuration, or is not built.</summary>
    NotApplicable,
    /// <summary>The item holds.</summary>
    Pass,
    /// <summary>The item needs the backend, which could not be read in time.</summary>
    Unknown,
    /// <summary>The item holds with a risk the operator should know of.</summary>
    Warn,
    /// <summary>The item does not hold, or the server would refuse to start for it.</summary>
    Fail,
}

/// <summary>One thing found about an item.</summary>
/// <param name="Status">How it stands.</param>
/// <param name="Detail">Why, in one sentence; never a secret.</param>
/// <param name="Setting">What to change when it warns or fails (a setting, or a file's mode), else null.</param>
internal sealed record Finding(CheckStatus Status, string Detail, string? Setting = null);

/// <summary>An item of the checklist as <c>conveyor doctor</c> prints it; with <c>--json</c>, these field names.</summary>
/// <param name="Id">The item's number in docs/security.md (1 to 14).</param>
/// <param name="Item">The item's name in docs/security.md.</param>
/// <param name="Status"><c>pass</c>, <c>warn</c>, <c>fail</c>, <c>n/a</c> or <c>unknown</c>.</param>
/// <param name="Detail">The findings of the item's status, joined with "; ".</param>
/// <param name="Setting">What to change, for an item that warns or fails; null otherwise.</param>
internal sealed record ChecklistResult(int Id, string Item, string Status, string Detail, string? Setting)
{
    /// <summary>The item from its findings: the worst status, with the findings of that status, and of a failing item its
    /// warnings too (after the failures), so that one run shows everything to change.</summary>
    public static ChecklistResult From(int id, string item, IReadOnlyList<Finding> findings)
    {
        var worst = findings.Max(f => f.Status);
        var shown = findings.Where(f => f.Status == worst || (worst == CheckStatus.Fail && f.Status == CheckStatus.Warn))
            .OrderByDescending(f => f.Status).ToList();
        var settings = worst is CheckStatus.Warn or CheckStatus.Fail
            ? string.Join("; ", shown.Select(f => f.Setting).OfType<string>().Distinct(StringComparer.Ordinal))
            : "";
        return new ChecklistResult(id, item, Name(worst), string.Join("; ", shown.Select(f => f.Detail)), settings.Length == 0 ? null : settings);
    }

    /// <summary>The status's name in the output.</summary>
    public static string Name(CheckStatus status) => status switch
    {
        CheckStatus.Pass => "pass",
        CheckStatus.Warn => "warn",
        CheckStatus.Fail => "fail",
        CheckStatus.Unknown => "unknown",
        _ => "n/a",
    };
}
