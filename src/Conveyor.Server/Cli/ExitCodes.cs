namespace Conveyor.Server.Cli;

/// <summary>Exit codes of the <c>conveyor</c> commands.</summary>
internal static class ExitCodes
{
    /// <summary>Done.</summary>
    public const int Success = 0;
    /// <summary>Failed while running: the backend or server could not be reached, the port was taken, a request was refused.</summary>
    public const int Failure = 1;
    /// <summary>A setting or argument cannot work; nothing was done. The message says what to change.</summary>
    public const int InvalidInput = 2;
    /// <summary><c>conveyor doctor</c>: an item of the security checklist fails for this configuration.</summary>
    public const int ChecklistFailed = 3;
}
