using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Sql;

/// <summary>
/// What the SQL backends store when a lease ends without an outcome (<see cref="LeaseRules"/>: it ran out, was abandoned,
/// or was handed back after its handler started). Each backend writes its own statement (docs/sql.md) over the columns
/// of migration 3: <c>lease_started</c> (the current lease's handler started; reset by every fetch), <c>lapses</c>
/// (leases that ended without an outcome, started or not: <see cref="Lease.RecordStartFirst"/> is <c>lapses &gt; 0</c>)
/// and <c>interruptions</c> (started leases that ended so).
/// </summary>
public static class LeaseEndings
{
    /// <summary><see cref="LeaseRules.MaxInterruptions"/> as text to compose into SQL (a constant, as
    /// <see cref="StoredStates"/> are; Conveyor.Sql.Tests pins it to the rule).</summary>
    public const string MaxInterruptions = "3";

    /// <summary><see cref="LeaseRules.InterruptedError"/> as stored in <c>tasks.error</c> and inside an <c>errors</c> entry.</summary>
    public static string InterruptedErrorJson { get; } = JsonSerializer.Serialize(LeaseRules.InterruptedError, ConveyorJson.Options);

    /// <summary>A time as an <see cref="AttemptError"/>'s <c>at</c> is serialized, for the <c>errors</c> entry a statement builds.</summary>
    public static string AtJson(DateTimeOffset at) => JsonSerializer.Serialize(at, ConveyorJson.Options);
}
