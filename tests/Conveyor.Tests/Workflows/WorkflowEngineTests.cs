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

    private static EngineHost NewHost() => new(c => c
        .AddTask<AddHandler>("math.add")
        .AddTask<CollectHandler>("math.collect")
        .AddTask<FailHandler>("test.fail"));

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
}
