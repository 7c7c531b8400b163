using Conveyor.Workflows;

namespace Conveyor.Tests.Workflows;

public sealed class WorkflowValidatorUnitTests
{
    private static List<FieldError> Validate(WorkflowDefinition definition, int maxSteps = 100, TaskRegistry? registry = null, bool requireRegistered = false)
    {
        var errors = new List<FieldError>();
        WorkflowValidator.Validate(definition, maxSteps, registry, requireRegistered, errors);
        return errors;
    }

    [Fact]
    public void A_valid_dag_has_no_errors()
    {
        var definition = Workflow.Create("harvest")
            .Step("fetch", "t.fetch", new { url = "https://example.org" })
            .Step("index", "t.index", "fetch")
            .Step("thumbs", "t.thumbs", "fetch")
            .Step("report", "t.report", "index", "thumbs")
            .Build();
        Assert.Empty(Validate(definition));
    }

    [Fact]
    public void A_cycle_is_refused_naming_a_step_in_it()
    {
        var definition = Workflow.Create().Step("a", "t", "c").Step("b", "t", "a").Step("c", "t", "b").Step("d", "t").Build();
        var error = Assert.Single(Validate(definition));
        Assert.Matches(@"^steps\[\d\]\.after$", error.Field);
        Assert.Matches("^step '[abc]' is in a cycle: ([abc] → ){3}[abc] ", error.Message);
    }

    [Fact]
    public void A_step_released_when_all_ended_must_run_after_another()
    {
        var definition = new WorkflowDefinition([new WorkflowStep("alone", new TaskRequest("t"), []) { RunWhen = WorkflowRunWhen.AllEnded }]);
        var error = Assert.Single(Validate(definition));
        Assert.Equal("steps[0].runWhen", error.Field);
        Assert.Contains("runs after no other step", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Workflow.Create().Step("a", "t").RunWhenAllEnded("a"));
    }

    [Fact]
    public void An_unknown_step_in_after_is_refused_naming_the_step()
    {
        var error = Assert.Single(Validate(Workflow.Create().Step("a", "t").Step("b", "t", "nope").Build()));
        Assert.Equal("steps[1].after", error.Field);
        Assert.Contains("step 'b' runs after 'nope'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_step_after_itself_is_refused()
    {
        var error = Assert.Single(Validate(Workflow.Create().Step("a", "t", "a").Build()));
        Assert.Equal("steps[0].after", error.Field);
        Assert.Contains("runs after itself", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_duplicate_step_id_is_refused_naming_both_places()
    {
        var error = Assert.Single(Validate(Workflow.Create().Step("a", "t").Step("a", "t").Build()));
        Assert.Equal("steps[1].id", error.Field);
        Assert.Contains("steps[0]", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Too_many_steps_are_refused()
    {
        var error = Assert.Single(Validate(Workflow.Group(Enumerable.Range(0, 11).Select(_ => new TaskRequest("t"))), maxSteps: 10));
        Assert.Equal("steps", error.Field);
        Assert.Contains("at most 10", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_task_is_refused_when_tasks_must_be_registered()
    {
        var error = Assert.Single(Validate(Workflow.Create().Step("a", "no.such.task").Build(), registry: new TaskRegistry(), requireRegistered: true));
        Assert.Equal("steps[0].task", error.Field);
        Assert.Contains("step 'a'", error.Message, StringComparison.Ordinal);
        Assert.Contains("unknown task 'no.such.task'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_ids_empty_workflows_and_what_steps_do_not_support_are_refused()
    {
        Assert.Equal("steps", Assert.Single(Validate(new WorkflowDefinition([]))).Field);
        Assert.Equal("steps[0].id", Assert.Single(Validate(Workflow.Create().Step("a b", "t").Build())).Field);
        var keyed = new TaskRequest("t", null, new EnqueueOptions { IdempotencyKey = "k" });
        Assert.Equal("steps[0].idempotencyKey", Assert.Single(Validate(Workflow.Create().Step("a", keyed).Build())).Field);
        var delayed = new TaskRequest("t", null, new EnqueueOptions { Delay = TimeSpan.FromSeconds(1) });
        Assert.Empty(Validate(Workflow.Create().Step("a", delayed).Build()));
        Assert.Equal("steps[1].delay", Assert.Single(Validate(Workflow.Create().Step("a", "t").Step("b", delayed, "a").Build())).Field);
        var reserved = new TaskRequest("t", null, new EnqueueOptions { Headers = new Dictionary<string, string> { [WorkflowHeaders.Step] = "x" } });
        Assert.Equal($"steps[0].headers.{WorkflowHeaders.Step}", Assert.Single(Validate(Workflow.Create().Step("a", reserved).Build())).Field);
    }

    [Fact]
    public void A_chain_of_a_hundred_thousand_steps_is_checked_without_recursion()
    {
        var chain = Workflow.Chain(Enumerable.Range(0, 100_000).Select(_ => new TaskRequest("t")));
        Assert.Empty(Validate(chain, maxSteps: 100_000));
    }

    [Fact]
    public void Chain_group_and_chord_build_the_expected_graphs()
    {
        var chain = Workflow.Chain([new TaskRequest("a"), new TaskRequest("b"), new TaskRequest("c")]);
        Assert.Equal([[], ["0"], ["1"]], chain.Steps.Select(s => s.After.ToArray()));
        var group = Workflow.Group([new TaskRequest("a"), new TaskRequest("b")]);
        Assert.All(group.Steps, s => Assert.Empty(s.After));
        var chord = Workflow.Chord([new TaskRequest("a"), new TaskRequest("b")], new TaskRequest("sum"));
        Assert.Equal(Workflow.ChordCallbackId, chord.Steps[^1].Id);
        Assert.Equal(["0", "1"], chord.Steps[^1].After);
    }
}
