using System.Globalization;
using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Sql.Tests;

public class LeaseEndingsUnitTests
{
    [Fact]
    public void The_bound_composed_into_sql_is_the_rule() =>
        Assert.Equal(LeaseEndings.MaxInterruptions, LeaseRules.MaxInterruptions.ToString(CultureInfo.InvariantCulture));

    [Fact]
    public void The_stored_error_reads_back_as_the_rule_s_error() =>
        Assert.Equal(LeaseRules.InterruptedError, JsonSerializer.Deserialize<TaskError>(LeaseEndings.InterruptedErrorJson, ConveyorJson.Options));

    [Fact]
    public void An_errors_entry_built_from_the_parts_reads_back_as_an_attempt_error()
    {
        // What the backends' statements build in SQL (json_object / jsonb_build_object), from these two texts.
        var at = new DateTimeOffset(2026, 12, 3, 10, 26, 27, 123, TimeSpan.Zero);
        var entry = $$"""{"attempt":2,"at":{{LeaseEndings.AtJson(at)}},"error":{{LeaseEndings.InterruptedErrorJson}}}""";

        Assert.Equal(new AttemptError(2, at, LeaseRules.InterruptedError), JsonSerializer.Deserialize<AttemptError>(entry, ConveyorJson.Options));
    }
}
