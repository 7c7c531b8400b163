using System.Globalization;
using Conveyor.Backends;

namespace Conveyor.Sql.Tests;

public class StoredStatesUnitTests
{
    private static string Number(TaskState state) => ((int)state).ToString(CultureInfo.InvariantCulture);

    private static string List(IEnumerable<TaskState> states) => string.Join(", ", states.Order().Select(Number));

    [Fact]
    public void Every_state_has_a_constant_equal_to_its_stored_number()
    {
        foreach (var state in Enum.GetValues<TaskState>())
        {
            var field = typeof(StoredStates).GetField(state.ToString());
            Assert.True(field is { IsLiteral: true }, $"StoredStates.{state} is missing");
            Assert.Equal(Number(state), (string)field!.GetRawConstantValue()!);
        }
    }

    [Fact]
    public void Stored_numbers_are_the_ones_databases_hold()
    {
        // Written out: renumbering TaskState would strand every stored row.
        Assert.Equal(["0", "1", "2", "3", "4", "5", "6", "7"],
            new[] { StoredStates.Scheduled, StoredStates.Queued, StoredStates.Running, StoredStates.Succeeded,
                StoredStates.Retrying, StoredStates.Dead, StoredStates.Cancelled, StoredStates.Expired });
    }

    [Fact]
    public void State_lists_hold_the_states_they_name()
    {
        var all = Enum.GetValues<TaskState>();
        Assert.Equal(StoredStates.Terminal, List(all.Where(s => s.IsTerminal())));
        Assert.Equal(StoredStates.Retryable, List(all.Where(s => s.IsTerminal() && s != TaskState.Succeeded)));
        Assert.Equal(StoredStates.Due, List([TaskState.Scheduled, TaskState.Retrying]));
        Assert.Equal(StoredStates.Waiting, List([TaskState.Scheduled, TaskState.Queued, TaskState.Retrying, TaskState.Pending]));
    }

    [Theory]
    [InlineData(CompletionKind.Succeeded, TaskState.Succeeded)]
    [InlineData(CompletionKind.Retry, TaskState.Retrying)]
    [InlineData(CompletionKind.Dead, TaskState.Dead)]
    [InlineData(CompletionKind.Cancelled, TaskState.Cancelled)]
    [InlineData(CompletionKind.Expired, TaskState.Expired)]
    public void A_completion_stores_its_state(CompletionKind kind, TaskState expected) =>
        Assert.Equal(expected, StoredStates.AfterCompletion(kind));

    [Fact]
    public void Every_completion_kind_is_mapped_and_an_unknown_one_throws()
    {
        Assert.Equal(5, Enum.GetValues<CompletionKind>().Length);
        Assert.All(Enum.GetValues<CompletionKind>(), kind => StoredStates.AfterCompletion(kind));
        Assert.Throws<ArgumentOutOfRangeException>(() => StoredStates.AfterCompletion((CompletionKind)99));
    }
}
