using Conveyor.Backends;
using Conveyor.Tests.Engine;
using Conveyor.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Workflows;

/// <summary>Workflows run by a real worker on the in-memory backend: results passed between steps, failure, cancel.</summary>
public sealed class WorkflowEngineTests
{
    public sealed record AddArgs(int Value);

    /// <summary>Returns its argument plus the results of the steps it runs after.</summary>
    public sealed class AddHandler(IWorkflowClient workflows) : ITaskHandler<AddArgs, int>
    {
        public async Task<int> HandleAsync(AddArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var inputs = await workflows.GetInputsAsync(context, cancellationToken);
            return args.Value + inputs.Sum(i => i.Result<int>());
        }
    }

    /// <summary>Returns the results of the steps it runs after, in order.</summary>
    public sealed class CollectHandler(IWorkflowClient workflows) : ITaskHandler<NoArgs, List<int>>
    {
        public async Task<List<int>> HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var inputs = await workflows.GetInputsAsync(context, cancellationToken);
            return [.. inputs.Select(i => i.Result<int>())];
        }
    }

    public sealed class FailHandler : ITaskHandler<NoArgs>
    {
        public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) =>
            throw new PermanentTaskException("fails for the test");
    }

    /// <summary>The error step: returns "step: error type" for each failure it reads.</summary>
    public sealed class AlertHandler(IWorkflowClient workflows) : ITaskHandler<NoArgs, List<string>>
    {
        public async Task<List<string>> HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var failures = await workflows.GetFailuresAsync(context, cancellationToken);
            return [.. failures.Select(f => $"{f.StepId}: {f.State.ToApiName()} {f.Error?.Type}")];
        }
    }

    /// <summary>A batch's onComplete: returns "step: state result-or-error type" for each member, in order.</summary>
    public sealed class OutcomesHandler(IWorkflowClient workflows) : ITaskHandler<NoArgs, List<string>>
    {
        public async Task<List<string>> HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var inputs = await workflows.GetInputsAsync(context, cancellationToken);
            return [.. inputs.Select(i => $"{i.StepId}: {i.State?.ToApiName()} {(i.Succeeded ? i.Result<int>().ToString(System.Globalization.CultureInfo.InvariantCulture) : i.Error?.Type)}")];
        }
    }

    private static EngineHost NewHost() => new(c => c
        .AddTask<OutcomesHandler>("batch.outcomes")
        .AddTask<AddHandler>("math.add")
        .AddTask<CollectHandler>("math.collect")
        .AddTask<FailHandler>("test.fail")
        .AddTask<AlertHandler>("ops.alert"));

    private static TaskRequest Add(int value) => TaskRequest.Create("math.add", new AddArgs(value));

    [Fact]
    public async Task A_chain_passes_each_result_to_the_next_step()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Chain([Add(1), Add(2), Add(3)]));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        Assert.Equal(6, await handle.WaitAsync<int>("2", timeout.Token));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Succeeded, record.State);
        Assert.Equal([1, 3, 6], record.Steps.Select(s => s.Result<int>()));
        Assert.All(record.Steps, s => Assert.Equal(TaskState.Succeeded, s.State));
    }

    [Fact]
    public async Task A_chord_callback_gets_every_result_of_its_group_in_order()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Chord(Enumerable.Range(1, 20).Select(Add), new TaskRequest("math.collect")));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        Assert.Equal(Enumerable.Range(1, 20), await handle.WaitAsync<List<int>>(Workflow.ChordCallbackId, timeout.Token));
    }

    [Fact]
    public async Task A_failed_step_fails_the_workflow_and_its_dependents_never_run()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create("failing")
            .Step("fail", new TaskRequest("test.fail"))
            .Step("after", Add(1), "fail")
            .Build());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var failure = await Assert.ThrowsAsync<WorkflowFailedException>(() => handle.WaitAsync<int>("after", timeout.Token));
        Assert.Contains("step 'fail' is dead", failure.Message, StringComparison.Ordinal);
        var record = failure.Workflow!;
        Assert.Equal(WorkflowState.Failed, record.State);
        Assert.Equal(TaskState.Cancelled, record.Step("after").State);
        Assert.Equal("failing", Assert.Single((await workflows.ListAsync(new WorkflowQuery { Name = "failing" })).Items).Name);
    }

    [Fact]
    public async Task An_invalid_workflow_is_refused_and_nothing_is_stored()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var error = await Assert.ThrowsAsync<TaskValidationException>(() => workflows.StartAsync(Workflow.Create().Step("a", Add(1), "b").Step("b", Add(1), "a").Build()));
        Assert.Contains("cycle", error.Message, StringComparison.Ordinal);
        Assert.Empty((await workflows.ListAsync(new WorkflowQuery())).Items);
        Assert.Empty((await host.Backend.ListAsync(new TaskQuery(), CancellationToken.None)).Items);
    }

    [Fact]
    public async Task Under_continue_the_other_branches_finish_and_the_error_step_reads_the_failure()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create("tolerant")
            .Step("fail", new TaskRequest("test.fail"))
            .Step("skipped", Add(1), "fail")
            .Step("one", Add(1))
            .Step("two", Add(1), "one")
            .ContinueOnFailure()
            .OnError("alert", new TaskRequest("ops.alert"))
            .Build());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Failed, record.State);
        Assert.Equal(2, record.Result<int>("two"));
        Assert.Equal(TaskState.Cancelled, record.Step("skipped").State);
        Assert.Equal(TaskState.Succeeded, record.Step("alert").State);
        Assert.True(record.Step("alert").IsErrorStep);
        var alert = Assert.Single(record.Result<List<string>>("alert")!);
        Assert.StartsWith("fail: dead ", alert, StringComparison.Ordinal);
        var ex = await Assert.ThrowsAsync<WorkflowFailedException>(() => handle.WaitAsync<int>("two", timeout.Token));
        Assert.Contains("step 'fail' is dead", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Under_stop_waiting_for_the_workflow_waits_for_its_error_step()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Create("strict")
            .Step("fail", new TaskRequest("test.fail"))
            .Step("after", Add(1), "fail")
            .OnError("alert", new TaskRequest("ops.alert"))
            .Build());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Failed, record.State);
        Assert.Equal(TaskState.Cancelled, record.Step("after").State);
        Assert.Equal(TaskState.Succeeded, record.Step("alert").State);
        Assert.StartsWith("fail: dead ", Assert.Single(record.Result<List<string>>("alert")!), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_runs_every_member_then_its_success_callback_with_their_results_in_order()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        var handle = await workflows.StartAsync(Workflow.Batch(Enumerable.Range(1, 12).Select(Add), onSuccess: new TaskRequest("math.collect"),
            onError: new TaskRequest("ops.alert"), name: "import"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        Assert.Equal(Enumerable.Range(1, 12), await handle.WaitForMembersAsync<int>(timeout.Token));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Succeeded, record.State);
        Assert.Equal("import", record.Name);
        Assert.Equal(Enumerable.Range(1, 12), record.Result<List<int>>(Workflow.ChordCallbackId));
        // No member failed: the error step never ran.
        Assert.Equal(TaskState.Cancelled, record.Step(Workflow.BatchErrorStepId).State);
    }

    [Fact]
    public async Task A_batch_members_failure_stops_no_other_member_runs_its_error_step_and_never_its_success_callback()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        TaskRequest[] members = [Add(1), Add(2), new TaskRequest("test.fail"), Add(4), Add(5)];
        var handle = await workflows.StartAsync(Workflow.Batch(members, onSuccess: new TaskRequest("math.collect"), onError: new TaskRequest("ops.alert")));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var failure = await Assert.ThrowsAsync<WorkflowFailedException>(() => handle.WaitForMembersAsync<int>(timeout.Token));
        var record = failure.Workflow!;
        Assert.Equal(WorkflowState.Failed, record.State);
        Assert.Equal([1, 2, 4, 5], new[] { "0", "1", "3", "4" }.Select(id => record.Result<int>(id)));
        Assert.Equal(TaskState.Dead, record.Step("2").State);
        Assert.Equal(TaskState.Cancelled, record.Step(Workflow.ChordCallbackId).State);
        Assert.StartsWith("2: dead ", Assert.Single(record.Result<List<string>>(Workflow.BatchErrorStepId)!), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batchs_on_complete_runs_once_after_every_member_ended_and_reads_their_outcomes_in_order()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        TaskRequest[] members = [Add(1), new TaskRequest("test.fail", Options: new EnqueueOptions { MaxAttempts = 1 }), Add(3)];
        var handle = await workflows.StartAsync(Workflow.Batch(members, onSuccess: new TaskRequest("math.collect"),
            onError: new TaskRequest("ops.alert"), onComplete: new TaskRequest("batch.outcomes")));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Failed, record.State);
        var complete = record.Step(Workflow.BatchCompleteStepId);
        Assert.Equal(WorkflowRunWhen.AllEnded, complete.RunWhen);
        Assert.Equal(["0", "1", "2"], complete.After);
        Assert.Equal(TaskState.Succeeded, complete.State);
        Assert.Equal(1, complete.Task!.Attempts);
        var outcomes = record.Result<List<string>>(Workflow.BatchCompleteStepId)!;
        Assert.Equal("0: succeeded 1", outcomes[0]);
        Assert.StartsWith("1: dead ", outcomes[1], StringComparison.Ordinal);
        Assert.Equal("2: succeeded 3", outcomes[2]);
        Assert.Equal(TaskState.Cancelled, record.Step(Workflow.ChordCallbackId).State);
        // It started after the last member ended.
        var lastEnd = new[] { "0", "1", "2" }.Max(id => record.Step(id).Task!.FinishedAt);
        Assert.True(complete.Task.StartedAt >= lastEnd);
    }

    [Fact]
    public async Task Under_stop_a_batchs_on_complete_is_spared_and_waiting_for_the_workflow_waits_for_it()
    {
        await using var host = NewHost();
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<IWorkflowClient>();
        TaskRequest[] members = [new TaskRequest("test.fail", Options: new EnqueueOptions { MaxAttempts = 1 }), Add(2)];
        var handle = await workflows.StartAsync(Workflow.Batch(members, onComplete: new TaskRequest("batch.outcomes")) with
        {
            OnFailure = WorkflowFailurePolicy.Stop,
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var record = await handle.WaitAsync(timeout.Token);
        Assert.Equal(WorkflowState.Failed, record.State);
        Assert.Equal(TaskState.Succeeded, record.Step(Workflow.BatchCompleteStepId).State);
        var outcomes = record.Result<List<string>>(Workflow.BatchCompleteStepId)!;
        Assert.Equal(2, outcomes.Count);
        Assert.StartsWith("0: dead ", outcomes[0], StringComparison.Ordinal);
        // The other member was stopped (cancelled) if it had not started, or ran to its end.
        Assert.True(outcomes[1] is "1: cancelled " or "1: succeeded 2", outcomes[1]);
    }
}
