namespace Conveyor;

/// <summary>
/// This process's part in the election of one leader among every process on a backend (through the coordination role's
/// leader lease). Leader-only work — ETA promotion, the lease reaper, retention, periodic schedules — runs where
/// <see cref="IsLeader"/> is true, so that it happens once however many processes run. Derive from
/// <see cref="LeaderOnlyService"/> to add such work.
/// </summary>
public interface ILeadership
{
    /// <summary>Whether this process leads now.</summary>
    bool IsLeader { get; }

    /// <summary>This process's id in the election.</summary>
    string Owner { get; }

    /// <summary>Waits until this process leads, and returns a token that is cancelled when it stops leading (its lease
    /// could not be renewed in time, it stepped down, or it shuts down). Work done as leader stops at that token.</summary>
    Task<CancellationToken> WaitForLeadershipAsync(CancellationToken cancellationToken);
}
