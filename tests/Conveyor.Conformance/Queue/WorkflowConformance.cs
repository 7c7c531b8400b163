using Conveyor.Backends;
using Conveyor.Workflows;

namespace Conveyor.Conformance;

/// <summary>Workflows (<see cref="IWorkflowStore"/>): steps wait in <see cref="TaskState.Pending"/> until the completion of
/// their last dependency releases them, in the same transaction or script; a failed step fails the workflow and cancels
/// what has not started (policy stop) or lets the other branches go on (continue); the error step runs on the first
/// failure; a workflow is cancelled whole, and a failed one retried from its failed steps.</summary>
public abstract class WorkflowConformance<TFactory>() : ConformanceTest(new TFactory())
    where TFactory : IConformanceBackendFactory, new()
{
    private IWorkflowStore Workflows => Backend.Workflows ?? throw new InvalidOperationException($"{Backend.Name} stores no workflows.");

    /// <summary>A workflow of no-op steps, each given as (id, ids of the steps it runs after).</summary>
    private NewWorkflow NewWorkflow(params (string Id, string[] After)[] steps) => NewWorkflow(null, steps);

    private NewWorkflow NewWorkflow(string? name, params (string Id, string[] After)[] steps)
    {
        var workflowId = Guid.CreateVersion7(Now);
        var ids = steps.ToDictionary(s => s.Id, _ => Guid.CreateVersion7(Now));
        return new NewWorkflow
        {
            Id = workflowId,
            Name = name,
            CreatedAt = Now,
            Steps = [.. steps.Select(s => new NewWorkflowStep(s.Id, NewMessage() with
            {
                Id = ids[s.Id],
                Headers = new Dictionary<string, string>
                {
                    [WorkflowHeaders.Workflow] = workflowId.ToString(),
                    [WorkflowHeaders.Step] = s.Id,
                    // As a traced client's workflow carries it: stored in the compact form, with the step's headers after it.
                    [ConveyorDiagnostics.TraceParentHeader] = CanonicalTraceParent,
                },
            }, [.. s.After.Select(a => ids[a])]))],
        };
    }

    /// <summary>The workflow with each step's failure policy: <paramref name="policy"/>, or the other one for
    /// <paramref name="exceptions"/>.</summary>
    private static NewWorkflow WithPolicy(NewWorkflow workflow, WorkflowFailurePolicy policy, params string[] exceptions) => workflow with
    {
        Steps = [.. workflow.Steps.Select(s => s with
        {
            OnFailure = exceptions.Contains(s.StepId) ? (policy == WorkflowFailurePolicy.Stop ? WorkflowFailurePolicy.Continue : WorkflowFailurePolicy.Stop) : policy,
        })],
    };

    /// <summary>The workflow with an error step <paramref name="id"/>, as the client builds it.</summary>
    private NewWorkflow WithErrorStep(NewWorkflow workflow, string id) => workflow with
    {
        Steps = [.. workflow.Steps, new NewWorkflowStep(id, NewMessage() with
        {
            Id = Guid.CreateVersion7(Now),
            Headers = new Dictionary<string, string>
            {
                [WorkflowHeaders.Workflow] = workflow.Id.ToString(),
                [WorkflowHeaders.Step] = id,
                [WorkflowHeaders.ErrorStep] = "1",
            },
        }, []) { IsErrorStep = true, OnFailure = WorkflowFailurePolicy.Continue }],
    };

    /// <summary>The workflow with steps <paramref name="stepIds"/> released once every step they run after has ended,
    /// whatever the outcome (a batch's onComplete).</summary>
    private static NewWorkflow WithAllEnded(NewWorkflow workflow, params string[] stepIds) => workflow with
    {
        Steps = [.. workflow.Steps.Select(s => stepIds.Contains(s.StepId) ? s with { RunWhen = WorkflowRunWhen.AllEnded } : s)],
    };

    private async Task<StoredWorkflow> WorkflowOf(NewWorkflow workflow) =>
        await Workflows.GetWorkflowAsync(workflow.Id, Timeout) ?? throw new InvalidOperationException("The workflow is not stored.");

    private static Guid TaskOf(NewWorkflow workflow, string stepId) => workflow.Steps.Single(s => s.StepId == stepId).Message.Id;

    private async Task<TaskState?> StateOf(NewWorkflow workflow, string stepId) =>
        (await Store.GetAsync(TaskOf(workflow, stepId), Timeout))?.State;

    private Completion Succeeded(Lease lease, string? result = null) =>
        new() { Lease = lease.Ref, Kind = CompletionKind.Succeeded, Attempt = lease.Attempt, Result = result, At = Now };

    private Completion Dead(Lease lease) =>
        new() { Lease = lease.Ref, Kind = CompletionKind.Dead, Attempt = lease.Attempt, Error = new TaskError("Test.Failure", "failed for the test"), At = Now };

    /// <summary>Fetches every ready step and returns them by step id.</summary>
    private async Task<Dictionary<string, Lease>> FetchStepsAsync()
    {
        var leases = await FetchAsync(1000);
        return leases.ToDictionary(l => l.Message.Headers![WorkflowHeaders.Step]);
    }

    /// <summary>Fetches the one step left, <paramref name="stepId"/>, and succeeds it: the workflow succeeded, with nothing
    /// else to run.</summary>
    private async Task RunLastStepAsync(NewWorkflow workflow, string stepId)
    {
        var last = Assert.Single(await FetchStepsAsync());
        Assert.Equal(stepId, last.Key);
        await Queue.CompleteAsync([Succeeded(last.Value)], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Retention_deletes_finished_workflows_past_it_with_their_steps_and_never_a_running_one()
    {
        // Succeeded: both steps ran.
        var succeeded = NewWorkflow("kept-until-retention", ("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(succeeded, Timeout);
        await Queue.CompleteAsync([Succeeded(Assert.Single(await FetchStepsAsync()).Value, "1")], Timeout);
        await Queue.CompleteAsync([Succeeded(Assert.Single(await FetchStepsAsync()).Value, "2")], Timeout);
        // Cancelled, nothing of it running.
        var cancelled = NewWorkflow(("x", []), ("y", ["x"]));
        await Workflows.CreateWorkflowAsync(cancelled, Timeout);
        Assert.True(await Workflows.CancelWorkflowAsync(cancelled.Id, Timeout));
        // Failed with a step still running (a stop lets it finish): kept until it ends.
        var failed = NewWorkflow(("p", []), ("q", []));
        await Workflows.CreateWorkflowAsync(failed, Timeout);
        var leases = await FetchStepsAsync();
        await Queue.CompleteAsync([Dead(leases["p"])], Timeout);
        // Running.
        var running = NewWorkflow(("r", []), ("s", ["r"]));
        await Workflows.CreateWorkflowAsync(running, Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(succeeded)).State);
        Assert.Equal(WorkflowState.Cancelled, (await WorkflowOf(cancelled)).State);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(failed)).State);
        Assert.Equal(TaskState.Running, await StateOf(failed, "q"));
        var ended = Now;
        Advance(TimeSpan.FromHours(1));

        // None ended before the bound.
        Assert.Equal(0, await Workflows.PurgeFinishedWorkflowsAsync(ended, 100, Timeout));
        Assert.NotNull(await Workflows.GetWorkflowAsync(succeeded.Id, Timeout));

        Assert.Equal(2, await Workflows.PurgeFinishedWorkflowsAsync(Now, 100, Timeout));

        foreach (var gone in new[] { succeeded, cancelled })
        {
            Assert.Null(await Workflows.GetWorkflowAsync(gone.Id, Timeout));
            Assert.Null(await Workflows.GetWorkflowSummaryAsync(gone.Id, Timeout));
            Assert.Empty(await Workflows.GetWorkflowTasksAsync(gone.Id, Timeout));
            foreach (var step in gone.Steps)
            {
                Assert.Null(await Store.GetAsync(step.Message.Id, Timeout));
            }
        }
        foreach (var kept in new[] { failed, running })
        {
            Assert.NotNull(await Workflows.GetWorkflowAsync(kept.Id, Timeout));
            Assert.Equal(2, (await Workflows.GetWorkflowTasksAsync(kept.Id, Timeout)).Count);
        }
        Assert.Equal([running.Id, failed.Id], (await Workflows.ListWorkflowsAsync(new WorkflowQuery(), Timeout)).Items.Select(w => w.Id));

        // Its last step ends: the failed workflow goes at the next pass, one at a time as asked; the running one stays.
        await Queue.CompleteAsync([Succeeded(leases["q"])], Timeout);
        Advance(TimeSpan.FromHours(1));
        Assert.Equal(1, await Workflows.PurgeFinishedWorkflowsAsync(Now, 1, Timeout));
        Assert.Equal(0, await Workflows.PurgeFinishedWorkflowsAsync(Now, 1, Timeout));
        Assert.Null(await Workflows.GetWorkflowAsync(failed.Id, Timeout));
        Assert.Null(await Store.GetAsync(TaskOf(failed, "q"), Timeout));
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(running)).State);
        Assert.Equal(TaskState.Queued, await StateOf(running, "r"));
        // A new workflow after the deletions is listed and runs as any.
        var later = NewWorkflow(("l", []));
        await Workflows.CreateWorkflowAsync(later, Timeout);
        Assert.Equal([later.Id, running.Id], (await Workflows.ListWorkflowsAsync(new WorkflowQuery(), Timeout)).Items.Select(w => w.Id));
    }

    [Fact]
    public async Task A_chain_runs_each_step_only_after_the_one_before_succeeded()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]), ("c", ["b"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "c"));

        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        await Queue.CompleteAsync([Succeeded(a.Value, "1")], Timeout);
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "c"));
        Assert.Equal(WorkflowState.Running, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);

        await Queue.CompleteAsync([Succeeded(b.Value, "2")], Timeout);
        var c = Assert.Single(await FetchStepsAsync());
        Assert.Equal("c", c.Key);
        await Queue.CompleteAsync([Succeeded(c.Value, "3")], Timeout);

        var stored = await Workflows.GetWorkflowAsync(workflow.Id, Timeout);
        Assert.NotNull(stored);
        Assert.Equal(WorkflowState.Succeeded, stored.State);
        Assert.Equal(Now, stored.FinishedAt);
        Assert.Equal(["a", "b", "c"], stored.Steps.Select(s => s.Id));
        Assert.Equal(["b"], stored.Steps[2].After);
        Assert.Equal(TaskOf(workflow, "c"), stored.Steps[2].TaskId);
        var tasks = await Workflows.GetWorkflowTasksAsync(workflow.Id, Timeout);
        Assert.Equal(["1", "2", "3"], new[] { "a", "b", "c" }.Select(step => tasks.Single(t => t.Id == TaskOf(workflow, step)).Result));
        Assert.All(tasks, t => Assert.Equal(TaskState.Succeeded, t.State));
        var b2 = tasks.Single(t => t.Id == TaskOf(workflow, "b"));
        Assert.Equal([TaskState.Pending, TaskState.Queued, TaskState.Running, TaskState.Succeeded], b2.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task A_chord_callback_is_released_by_its_last_member_only()
    {
        var workflow = NewWorkflow(("0", []), ("1", []), ("2", []), ("callback", ["0", "1", "2"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var group = await FetchStepsAsync();
        Assert.Equal(["0", "1", "2"], group.Keys.Order());

        await Queue.CompleteAsync([Succeeded(group["0"]), Succeeded(group["2"])], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "callback"));

        await Queue.CompleteAsync([Succeeded(group["1"])], Timeout);
        var callback = Assert.Single(await FetchStepsAsync());
        Assert.Equal("callback", callback.Key);
    }

    [Fact]
    public async Task A_chords_join_is_exact_when_its_last_two_members_finish_at_once_on_two_instances()
    {
        var peer = await NewPeerAsync();
        for (var round = 0; round < 10; round++)
        {
            var workflow = NewWorkflow(("0", []), ("1", []), ("callback", ["0", "1"]));
            await Workflows.CreateWorkflowAsync(workflow, Timeout);
            var group = await FetchStepsAsync();
            Assert.Equal(2, group.Count);
            using var start = new Barrier(2);
            // Each on its own thread and instance, released together: the two completions' transactions overlap.
            await Task.WhenAll(
                Task.Run(async () => { start.SignalAndWait(Timeout); await Queue.CompleteAsync([Succeeded(group["0"])], Timeout); }),
                Task.Run(async () => { start.SignalAndWait(Timeout); await peer.Queue.CompleteAsync([Succeeded(group["1"])], Timeout); }));
            var callback = Assert.Single(await FetchStepsAsync());
            Assert.Equal("callback", callback.Key);
            Assert.Empty(await FetchAsync());
            await Queue.CompleteAsync([Succeeded(callback.Value)], Timeout);
            Assert.Equal(WorkflowState.Succeeded, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
        }
    }

    [Fact]
    public async Task A_step_runs_only_when_every_step_it_runs_after_succeeded_in_a_diamond()
    {
        var workflow = NewWorkflow(("fetch", []), ("left", ["fetch"]), ("right", ["fetch"]), ("report", ["left", "right"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var fetch = await FetchStepsAsync();
        await Queue.CompleteAsync([Succeeded(fetch["fetch"])], Timeout);
        var sides = await FetchStepsAsync();
        Assert.Equal(["left", "right"], sides.Keys.Order());
        await Queue.CompleteAsync([Succeeded(sides["right"])], Timeout);
        Assert.Empty(await FetchAsync());
        await Queue.CompleteAsync([Succeeded(sides["left"])], Timeout);
        var report = Assert.Single(await FetchStepsAsync());
        Assert.Equal("report", report.Key);
    }

    [Fact]
    public async Task A_completion_under_a_lost_lease_releases_nothing()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var stale = (await FetchStepsAsync())["a"];
        await ExpireLeasesAsync();
        var current = (await FetchStepsAsync())["a"];

        await Queue.CompleteAsync([Succeeded(stale)], Timeout);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "b"));
        Assert.Empty(await FetchAsync());

        await Queue.CompleteAsync([Succeeded(current)], Timeout);
        Assert.Equal("b", Assert.Single(await FetchStepsAsync()).Key);
    }

    [Fact]
    public async Task A_failed_step_fails_the_workflow_and_cancels_the_steps_that_have_not_started()
    {
        var workflow = NewWorkflow(("a", []), ("b", []), ("c", []), ("after-a", ["a"]), ("end", ["after-a", "b"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var leases = await FetchAsync(2);
        var byStep = leases.ToDictionary(l => l.Message.Headers![WorkflowHeaders.Step]);
        Assert.Equal(["a", "b"], byStep.Keys.Order());

        await Queue.CompleteAsync([Dead(byStep["a"])], Timeout);
        var stored = await Workflows.GetWorkflowAsync(workflow.Id, Timeout);
        Assert.Equal(WorkflowState.Failed, stored!.State);
        Assert.Equal(Now, stored.FinishedAt);
        Assert.Equal(TaskState.Dead, await StateOf(workflow, "a"));
        Assert.Equal(TaskState.Running, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "c"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "end"));
        Assert.Empty(await FetchAsync());

        // A step that was running finishes; it releases nothing and the workflow stays failed.
        await Queue.CompleteAsync([Succeeded(byStep["b"])], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "end"));
        Assert.Equal(WorkflowState.Failed, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
    }

    [Fact]
    public async Task A_step_whose_lease_runs_out_for_the_last_time_fails_the_workflow()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        LeaseSweep? last = null;
        for (var i = 0; i < LeaseRules.MaxInterruptions; i++)
        {
            await FetchStartedAsync();
            Advance(LeaseDuration + TimeSpan.FromSeconds(1));
            last = await Queue.RequeueExpiredLeasesAsync(Timeout);
            Assert.Equal(1, last.Count);
        }
        // The sweep names the step it ended, so that the reaper raises its event and the workflow's end is announced.
        Assert.Equal(new EndedLease(TaskOf(workflow, "a"), TaskState.Dead), Assert.Single(last!.Ended));
        Assert.Equal(TaskState.Dead, await StateOf(workflow, "a"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));
        Assert.Equal(WorkflowState.Failed, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
    }

    [Fact]
    public async Task Cancelling_a_step_by_hand_fails_its_workflow()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(TaskOf(workflow, "b"), Timeout));
        Assert.Equal(WorkflowState.Failed, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "a"));
    }

    [Fact]
    public async Task Cancelling_a_workflow_cancels_its_waiting_steps_and_asks_its_running_ones_to_stop()
    {
        var workflow = NewWorkflow(("a", []), ("b", []), ("c", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = await FetchOneAsync();
        Assert.Equal("a", a.Message.Headers![WorkflowHeaders.Step]);

        Assert.True(await Workflows.CancelWorkflowAsync(workflow.Id, Timeout));
        var stored = await Workflows.GetWorkflowAsync(workflow.Id, Timeout);
        Assert.Equal(WorkflowState.Cancelled, stored!.State);
        Assert.Equal(Now, stored.FinishedAt);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "c"));
        var extension = await Queue.ExtendLeasesAsync([a.Ref], LeaseDuration, Timeout);
        Assert.Equal([a.Message.Id], extension.CancelRequested);

        // The running step stops; nothing runs after it, and a second cancel finds nothing to do.
        await Queue.CompleteAsync([new Completion { Lease = a.Ref, Kind = CompletionKind.Cancelled, Attempt = 1, At = Now }], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(WorkflowState.Cancelled, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
        Assert.False(await Workflows.CancelWorkflowAsync(workflow.Id, Timeout));
        Assert.False(await Workflows.CancelWorkflowAsync(Guid.CreateVersion7(), Timeout));
    }

    [Fact]
    public async Task A_workflows_summary_gives_its_name_state_and_times_as_stored()
    {
        var workflow = NewWorkflow("summarised", ("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var running = await Workflows.GetWorkflowSummaryAsync(workflow.Id, Timeout);
        Assert.Equal(new WorkflowSummary(workflow.Id, "summarised", WorkflowState.Running, Now, null), running);

        await Queue.CompleteAsync([Succeeded(await FetchOneAsync())], Timeout);
        Advance(TimeSpan.FromSeconds(3));
        await Queue.CompleteAsync([Succeeded(await FetchOneAsync())], Timeout);
        var stored = await WorkflowOf(workflow);
        var ended = await Workflows.GetWorkflowSummaryAsync(workflow.Id, Timeout);
        Assert.Equal(new WorkflowSummary(workflow.Id, "summarised", WorkflowState.Succeeded, stored.CreatedAt, stored.FinishedAt), ended);
        Assert.Equal(Now, ended!.FinishedAt);

        var unnamed = NewWorkflow(("x", []));
        await Workflows.CreateWorkflowAsync(unnamed, Timeout);
        Assert.Null((await Workflows.GetWorkflowSummaryAsync(unnamed.Id, Timeout))!.Name);
        Assert.Null(await Workflows.GetWorkflowSummaryAsync(Guid.CreateVersion7(), Timeout));
    }

    [Fact]
    public async Task Creating_a_workflow_is_all_or_nothing()
    {
        var existing = await EnqueueAsync(NewMessage());
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        // Its second step's task id is taken: the whole workflow is refused.
        var clash = workflow with { Steps = [workflow.Steps[0], workflow.Steps[1] with { Message = workflow.Steps[1].Message with { Id = existing.Id } }] };
        await Assert.ThrowsAnyAsync<Exception>(() => Workflows.CreateWorkflowAsync(clash, Timeout));
        Assert.Null(await Workflows.GetWorkflowAsync(workflow.Id, Timeout));
        Assert.Null(await Store.GetAsync(TaskOf(workflow, "a"), Timeout));
        Assert.Equal(existing.Id, Assert.Single(await FetchAsync()).Message.Id);
    }

    [Fact]
    public async Task Workflows_are_listed_newest_first_by_state_and_name_a_page_at_a_time()
    {
        var first = NewWorkflow("harvest", ("a", []));
        var second = NewWorkflow("harvest", ("a", []));
        var other = NewWorkflow("report", ("a", []));
        foreach (var w in new[] { first, second, other })
        {
            await Workflows.CreateWorkflowAsync(w, Timeout);
        }
        Assert.True(await Workflows.CancelWorkflowAsync(first.Id, Timeout));

        var all = await Workflows.ListWorkflowsAsync(new WorkflowQuery(), Timeout);
        Assert.Equal([other.Id, second.Id, first.Id], all.Items.Select(w => w.Id));
        Assert.Null(all.NextCursor);
        var harvests = await Workflows.ListWorkflowsAsync(new WorkflowQuery { Name = "harvest" }, Timeout);
        Assert.Equal([second.Id, first.Id], harvests.Items.Select(w => w.Id));
        var running = await Workflows.ListWorkflowsAsync(new WorkflowQuery { State = WorkflowState.Running }, Timeout);
        Assert.Equal([other.Id, second.Id], running.Items.Select(w => w.Id));

        var page1 = await Workflows.ListWorkflowsAsync(new WorkflowQuery { Limit = 2 }, Timeout);
        Assert.Equal([other.Id, second.Id], page1.Items.Select(w => w.Id));
        Assert.NotNull(page1.NextCursor);
        var page2 = await Workflows.ListWorkflowsAsync(new WorkflowQuery { Limit = 2, Cursor = page1.NextCursor }, Timeout);
        Assert.Equal([first.Id], page2.Items.Select(w => w.Id));
        Assert.Null(page2.NextCursor);
        Assert.Equal("a", Assert.Single(page2.Items[0].Steps).Id);
    }

    [Fact]
    public async Task Under_the_policy_continue_a_failed_step_leaves_its_dependents_pending_while_the_other_branches_go_on()
    {
        var workflow = WithPolicy(NewWorkflow(("a", []), ("b", []), ("after-a", ["a"]), ("then", ["after-a"]), ("after-b", ["b"])), WorkflowFailurePolicy.Continue);
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var first = await FetchStepsAsync();
        Assert.Equal(["a", "b"], first.Keys.Order());

        await Queue.CompleteAsync([Dead(first["a"])], Timeout);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "then"));
        Assert.Equal(TaskState.Running, await StateOf(workflow, "b"));

        await Queue.CompleteAsync([Succeeded(first["b"])], Timeout);
        var afterB = Assert.Single(await FetchStepsAsync());
        Assert.Equal("after-b", afterB.Key);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);

        // The last active step ends: the workflow fails, and the steps that could never run are cancelled with it.
        await Queue.CompleteAsync([Succeeded(afterB.Value)], Timeout);
        var stored = await WorkflowOf(workflow);
        Assert.Equal(WorkflowState.Failed, stored.State);
        Assert.Equal(Now, stored.FinishedAt);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "then"));
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "after-b"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_chord_whose_members_all_end_in_one_batch_releases_its_callback_once()
    {
        var workflow = NewWorkflow(("0", []), ("1", []), ("2", []), ("callback", ["0", "1", "2"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var group = await FetchStepsAsync();

        Assert.Same(CompletionOverride.None, await Queue.CompleteAsync([.. group.Values.Select(l => Succeeded(l))], Timeout));
        var callback = Assert.Single(await FetchStepsAsync());
        Assert.Equal("callback", callback.Key);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        await Queue.CompleteAsync([Succeeded(callback.Value)], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task The_completions_hint_that_a_task_is_a_step_is_only_a_hint()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = Assert.Single(await FetchStepsAsync());
        var plain = NewMessage();
        await Queue.EnqueueAsync([plain], Timeout);
        var plainLease = await FetchOneAsync();

        // The step with the hint, the plain task with a wrong one: both complete, and the step releases the next.
        await Queue.CompleteAsync([Succeeded(a.Value) with { WorkflowStep = true }, Succeeded(plainLease) with { WorkflowStep = true }], Timeout);
        Assert.Equal(TaskState.Succeeded, (await Store.GetAsync(plain.Id, Timeout))!.State);
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        await Queue.CompleteAsync([Succeeded(b.Value) with { WorkflowStep = true }], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
    }

    [Fact]
    public async Task A_steps_success_without_the_hint_beside_plain_tasks_still_releases_its_dependents()
    {
        // A backend may write a batch without a hinted step's success by a plain statement (PostgreSQL does): a step's
        // success that lacks the hint must still reach its workflow, and the plain tasks beside it must end once.
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = Assert.Single(await FetchStepsAsync());
        var plain = new[] { NewMessage(), NewMessage() };
        await Queue.EnqueueAsync(plain, Timeout);
        var plainLeases = new[] { await FetchOneAsync(), await FetchOneAsync() };

        await Queue.CompleteAsync([Succeeded(plainLeases[0]), Succeeded(a.Value, "1"), Dead(plainLeases[1])], Timeout);
        Assert.Equal(TaskState.Succeeded, (await Store.GetAsync(plain[0].Id, Timeout))!.State);
        Assert.Equal(TaskState.Dead, (await Store.GetAsync(plain[1].Id, Timeout))!.State);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "a"));
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        await Queue.CompleteAsync([Succeeded(b.Value)], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_success_and_a_failure_in_one_batch_under_stop_fail_the_workflow_and_cancel_what_the_success_released(bool successFirst)
    {
        var workflow = NewWorkflow(("a", []), ("b", []), ("after-a", ["a"]), ("after-b", ["b"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var first = await FetchStepsAsync();

        Completion[] batch = successFirst ? [Succeeded(first["b"]), Dead(first["a"])] : [Dead(first["a"]), Succeeded(first["b"])];
        await Queue.CompleteAsync(batch, Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Dead, await StateOf(workflow, "a"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-b"));
        Assert.Empty(await FetchAsync());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_success_and_a_failure_in_one_batch_under_continue_end_the_workflow_once_nothing_is_active(bool successFirst)
    {
        var workflow = WithPolicy(NewWorkflow(("a", []), ("b", []), ("after-a", ["a"])), WorkflowFailurePolicy.Continue);
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var first = await FetchStepsAsync();

        Completion[] batch = successFirst ? [Succeeded(first["b"]), Dead(first["a"])] : [Dead(first["a"]), Succeeded(first["b"])];
        await Queue.CompleteAsync(batch, Timeout);
        var stored = await WorkflowOf(workflow);
        Assert.Equal(WorkflowState.Failed, stored.State);
        Assert.Equal(Now, stored.FinishedAt);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_steps_own_policy_overrides_the_workflows()
    {
        // The workflow stops on failure, but not for "a"; "b" keeps the workflow's stop.
        var workflow = WithPolicy(NewWorkflow(("a", []), ("b", []), ("c", []), ("after-a", ["a"])), WorkflowFailurePolicy.Stop, "a");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var leases = (await FetchAsync(2)).ToDictionary(l => l.Message.Headers![WorkflowHeaders.Step]);
        Assert.Equal(["a", "b"], leases.Keys.Order());

        await Queue.CompleteAsync([Dead(leases["a"])], Timeout);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "c"));

        await Queue.CompleteAsync([Dead(leases["b"])], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "c"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_failure_queues_the_error_step_which_a_stop_does_not_cancel()
    {
        var workflow = WithErrorStep(NewWorkflow(("a", []), ("b", ["a"])), "alert");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "alert"));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);

        await Queue.CompleteAsync([Dead(a.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));
        var alert = Assert.Single(await FetchStepsAsync());
        Assert.Equal("alert", alert.Key);
        var stored = await WorkflowOf(workflow);
        Assert.True(stored.Steps.Single(s => s.Id == "alert").IsErrorStep);
        Assert.False(stored.Steps.Single(s => s.Id == "a").IsErrorStep);

        await Queue.CompleteAsync([Succeeded(alert.Value)], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "alert"));
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
    }

    [Fact]
    public async Task Under_the_policy_continue_the_error_step_runs_once_and_the_workflow_ends_after_it()
    {
        var workflow = WithErrorStep(WithPolicy(NewWorkflow(("a", []), ("b", []), ("c", [])), WorkflowFailurePolicy.Continue), "alert");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var steps = await FetchStepsAsync();
        Assert.Equal(["a", "b", "c"], steps.Keys.Order());

        await Queue.CompleteAsync([Dead(steps["a"])], Timeout);
        await Queue.CompleteAsync([Dead(steps["b"])], Timeout);
        await Queue.CompleteAsync([Succeeded(steps["c"])], Timeout);
        // Two failures, one error step; it is still to run, so the workflow has not ended.
        var alert = Assert.Single(await FetchStepsAsync());
        Assert.Equal("alert", alert.Key);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);

        await Queue.CompleteAsync([Dead(alert.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task The_error_step_is_cancelled_unrun_when_no_step_fails()
    {
        var workflow = WithErrorStep(NewWorkflow(("a", []), ("b", ["a"])), "alert");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = Assert.Single(await FetchStepsAsync());
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        await Queue.CompleteAsync([Succeeded(b.Value)], Timeout);

        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "alert"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Under_the_policy_continue_cancelling_a_pending_step_by_hand_fails_the_workflow_once_the_rest_ended()
    {
        var workflow = WithPolicy(NewWorkflow(("a", []), ("b", ["a"]), ("c", ["b"])), WorkflowFailurePolicy.Continue);
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(TaskOf(workflow, "b"), Timeout));
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "a"));

        var a = Assert.Single(await FetchStepsAsync());
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "c"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Retrying_a_failed_workflow_runs_its_failed_steps_and_those_after_them_again_keeping_what_succeeded()
    {
        var workflow = WithErrorStep(NewWorkflow(("a", []), ("b", []), ("after-a", ["a"]), ("end", ["after-a", "b"])), "alert");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var first = await FetchStepsAsync();
        Assert.Equal(["a", "b"], first.Keys.Order());
        await Queue.CompleteAsync([Succeeded(first["b"], "2")], Timeout);
        Assert.False(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        await Queue.CompleteAsync([Dead(first["a"])], Timeout);
        var alert = Assert.Single(await FetchStepsAsync());
        await Queue.CompleteAsync([Succeeded(alert.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        var stored = await WorkflowOf(workflow);
        Assert.Equal(WorkflowState.Running, stored.State);
        Assert.Null(stored.FinishedAt);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "a"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "end"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "alert"));
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "b"));
        Assert.False(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));

        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        Assert.Equal(1, a.Value.Attempt);
        await Queue.CompleteAsync([Succeeded(a.Value, "1")], Timeout);
        var afterA = Assert.Single(await FetchStepsAsync());
        Assert.Equal("after-a", afterA.Key);
        await Queue.CompleteAsync([Succeeded(afterA.Value)], Timeout);
        // "end" waits for "b" too, which succeeded in the first run: released by "after-a" alone.
        var end = Assert.Single(await FetchStepsAsync());
        Assert.Equal("end", end.Key);
        await Queue.CompleteAsync([Succeeded(end.Value)], Timeout);

        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "alert"));
        var tasks = await Workflows.GetWorkflowTasksAsync(workflow.Id, Timeout);
        Assert.Equal("2", tasks.Single(t => t.Id == TaskOf(workflow, "b")).Result);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Retrying_a_cancelled_workflow_waits_for_the_step_still_running()
    {
        var workflow = NewWorkflow(("a", []), ("b", ["a"]));
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = Assert.Single(await FetchStepsAsync());
        Assert.True(await Workflows.CancelWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "b"));
        Assert.Empty(await FetchAsync());
        // The running step was asked to stop, but may succeed all the same: then it releases "b".
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        await Queue.CompleteAsync([Succeeded(b.Value)], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.False(await Workflows.RetryWorkflowAsync(Guid.CreateVersion7(), Timeout));
    }

    [Fact]
    public async Task A_workflow_of_a_thousand_steps_in_a_chain_runs_to_its_end()
    {
        var steps = Enumerable.Range(0, 1000).Select(i => (i.ToString(System.Globalization.CultureInfo.InvariantCulture), i == 0 ? Array.Empty<string>() : [(i - 1).ToString(System.Globalization.CultureInfo.InvariantCulture)])).ToArray();
        var workflow = NewWorkflow(steps);
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        for (var i = 0; i < 1000; i++)
        {
            var lease = await FetchOneAsync();
            Assert.Equal(TaskOf(workflow, steps[i].Item1), lease.Message.Id);
            await Queue.CompleteAsync([Succeeded(lease)], Timeout);
        }
        Assert.Equal(WorkflowState.Succeeded, (await Workflows.GetWorkflowAsync(workflow.Id, Timeout))!.State);
    }

    [Fact]
    public async Task A_step_released_when_all_ended_runs_once_after_its_last_member_ended_whatever_the_outcomes()
    {
        // A batch: members a, b, c, d each to its own end (continue), "complete" after all of them, whatever the outcome.
        var workflow = WithAllEnded(WithPolicy(NewWorkflow(("a", []), ("b", []), ("c", []), ("d", []), ("complete", ["a", "b", "c", "d"])),
            WorkflowFailurePolicy.Continue), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        Assert.Equal(WorkflowRunWhen.AllEnded, (await WorkflowOf(workflow)).Steps.Single(s => s.Id == "complete").RunWhen);
        Assert.Equal(WorkflowRunWhen.AllSucceeded, (await WorkflowOf(workflow)).Steps.Single(s => s.Id == "a").RunWhen);
        var members = await FetchAsync(3);
        var byStep = members.ToDictionary(l => l.Message.Headers![WorkflowHeaders.Step]);
        Assert.Equal(["a", "b", "c"], byStep.Keys.Order());

        // A failure (dead, maxAttempts 1), a success, and a hand cancel of the member still queued: not yet.
        await Queue.CompleteAsync([Dead(byStep["a"])], Timeout);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        await Queue.CompleteAsync([Succeeded(byStep["b"], "2")], Timeout);
        Assert.Equal(CancelOutcome.Cancelled, await Queue.CancelAsync(TaskOf(workflow, "d"), Timeout));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        Assert.Empty(await FetchAsync());
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);

        // The last member ends (dead): the step is released, once.
        await Queue.CompleteAsync([Dead(byStep["c"])], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        await Queue.CompleteAsync([Succeeded(complete.Value, "\"done\"")], Timeout);
        Assert.Empty(await FetchAsync());
        var stored = await WorkflowOf(workflow);
        Assert.Equal(WorkflowState.Failed, stored.State);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        var task = await Store.GetAsync(TaskOf(workflow, "complete"), Timeout);
        Assert.Equal([TaskState.Pending, TaskState.Queued, TaskState.Running, TaskState.Succeeded], task!.Transitions.Select(t => t.State));
    }

    [Fact]
    public async Task A_step_released_when_all_ended_runs_after_all_succeeded_and_the_workflow_succeeds()
    {
        var workflow = WithAllEnded(WithPolicy(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"])), WorkflowFailurePolicy.Continue), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = await FetchStepsAsync();
        Assert.Equal(["a", "b"], members.Keys.Order());
        await Queue.CompleteAsync([Succeeded(members["a"])], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        await RunLastStepAsync(workflow, "complete");
    }

    [Fact]
    public async Task Under_the_policy_stop_a_step_released_when_all_ended_is_spared_and_runs_once_the_running_members_ended()
    {
        // Under stop: a fails; c (queued) and after-a (pending) are cancelled, the error step queued, and "complete" is
        // spared: it waits for b, still running.
        var workflow = WithErrorStep(WithAllEnded(NewWorkflow(("a", []), ("b", []), ("c", []), ("after-a", ["a"]), ("complete", ["a", "b", "c", "after-a"])),
            "complete"), "alert");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = (await FetchAsync(2)).ToDictionary(l => l.Message.Headers![WorkflowHeaders.Step]);
        Assert.Equal(["a", "b"], members.Keys.Order());

        await Queue.CompleteAsync([Dead(members["a"])], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "c"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-a"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        Assert.Equal("alert", Assert.Single(await FetchStepsAsync()).Key);
        Assert.Empty(await FetchAsync());

        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Under_the_policy_stop_a_failure_that_ends_the_last_members_by_its_cancellations_releases_the_spared_step_at_once()
    {
        // a runs and fails; b (queued) and after-b (pending) are cancelled by the stop: every step "complete" runs after
        // has then ended.
        var workflow = WithAllEnded(NewWorkflow(("a", []), ("b", []), ("after-b", ["b"]), ("complete", ["a", "b", "after-b"])), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = await FetchOneAsync();
        Assert.Equal("a", a.Message.Headers![WorkflowHeaders.Step]);

        await Queue.CompleteAsync([Dead(a)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "after-b"));
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task Cancelling_a_workflow_cancels_its_step_released_when_all_ended()
    {
        var workflow = WithAllEnded(WithPolicy(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"])), WorkflowFailurePolicy.Continue), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = await FetchOneAsync();
        Assert.Equal("a", a.Message.Headers![WorkflowHeaders.Step]);

        Assert.True(await Workflows.CancelWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "b"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "complete"));
        // The running member stops: every member has ended, and still nothing runs.
        await Queue.CompleteAsync([new Completion { Lease = a.Ref, Kind = CompletionKind.Cancelled, Attempt = 1, At = Now }], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "complete"));
        Assert.Equal(WorkflowState.Cancelled, (await WorkflowOf(workflow)).State);
    }

    [Fact]
    public async Task Retrying_a_workflow_whose_step_released_when_all_ended_was_cancelled_runs_it_after_the_retried_members()
    {
        var workflow = WithAllEnded(WithPolicy(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"])), WorkflowFailurePolicy.Continue), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var a = await FetchOneAsync();
        await Queue.CompleteAsync([Succeeded(a)], Timeout);
        Assert.True(await Workflows.CancelWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "complete"));

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        var b = Assert.Single(await FetchStepsAsync());
        Assert.Equal("b", b.Key);
        await Queue.CompleteAsync([Dead(b.Value)], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
    }

    [Fact]
    public async Task Retrying_a_workflow_recounts_its_spared_step_released_when_all_ended_which_then_waits_for_the_retried_members()
    {
        // A batch under stop (under continue a workflow fails only once nothing is active, after its onComplete ran, so
        // only a stop leaves one waiting at a retry): a fails, b still runs, "complete" is spared and waits for b alone.
        var workflow = WithAllEnded(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"])), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = await FetchStepsAsync();
        Assert.Equal(["a", "b"], members.Keys.Order());
        await Queue.CompleteAsync([Dead(members["a"])], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        // The retry runs a again: "complete" waits for it as well as for b, whose end no longer releases it.
        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "a"));
        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        await RunLastStepAsync(workflow, "complete");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Retrying_a_workflow_takes_a_spared_step_released_but_not_started_back_to_pending_until_the_retried_steps_end(bool retrying)
    {
        // Under stop: a fails, then b's success releases the spared "complete", which is queued (or, after an attempt that
        // asked for a retry, retrying) but not running when the workflow is retried.
        var workflow = WithAllEnded(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"])), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = await FetchStepsAsync();
        Assert.Equal(["a", "b"], members.Keys.Order());
        await Queue.CompleteAsync([Dead(members["a"])], Timeout);
        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "complete"));
        if (retrying)
        {
            var attempt = Assert.Single(await FetchStepsAsync());
            Assert.Equal("complete", attempt.Key);
            await Queue.CompleteAsync([new Completion
            {
                Lease = attempt.Value.Ref, Kind = CompletionKind.Retry, Attempt = attempt.Value.Attempt, RetryAt = Now.AddMinutes(1),
                Error = new TaskError("Test.Failure", "failed for the test"), At = Now,
            }], Timeout);
            Assert.Equal(TaskState.Retrying, await StateOf(workflow, "complete"));
        }
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        // a's end releases it, at once (a retry's wait is not kept), with the attempts it had.
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        Assert.Equal(retrying ? 2 : 1, complete.Value.Attempt);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_step_running_when_its_workflow_is_retried_runs_on_and_is_not_run_again_after_the_retried_steps()
    {
        // Under stop: a fails, b's success releases the spared "complete", which a worker leased before the retry.
        var workflow = WithAllEnded(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"]), ("report", ["complete"])), "complete", "report");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = await FetchStepsAsync();
        await Queue.CompleteAsync([Dead(members["a"])], Timeout);
        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Running, await StateOf(workflow, "complete"));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "report"));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);

        // Its lease still holds; its end releases what runs after it, as any end does.
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        var report = Assert.Single(await FetchStepsAsync());
        Assert.Equal("report", report.Key);
        await Queue.CompleteAsync([Succeeded(report.Value)], Timeout);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        var task = await Store.GetAsync(TaskOf(workflow, "complete"), Timeout);
        Assert.Single(task!.Transitions, t => t.State == TaskState.Running);
    }

    /// <summary>A stop-spared "complete" (released when all ended, after a and b; "report" runs after it) leased by a
    /// worker, and started for <see cref="StepLeaseEnd.InterruptedAndAbandoned"/>, when its workflow is retried from a.</summary>
    private async Task<(NewWorkflow Workflow, Lease Complete)> RetriedWithCompleteLeasedAsync(StepLeaseEnd end)
    {
        var workflow = WithAllEnded(NewWorkflow(("a", []), ("b", []), ("complete", ["a", "b"]), ("report", ["complete"])), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var members = await FetchStepsAsync();
        await Queue.CompleteAsync([Dead(members["a"])], Timeout);
        await Queue.CompleteAsync([Succeeded(members["b"])], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        if (end == StepLeaseEnd.InterruptedAndAbandoned)
        {
            Assert.Empty(await Queue.StartAsync([complete.Value.Ref], Timeout));
        }
        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        Assert.Equal(TaskState.Running, await StateOf(workflow, "complete"));
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "a"));
        return (workflow, complete.Value);
    }

    /// <summary>Ends <paramref name="lease"/>, the only one held, without an outcome.</summary>
    private async Task EndLeaseAsync(StepLeaseEnd end, Lease lease)
    {
        switch (end)
        {
            case StepLeaseEnd.Expired:
                // Only this lease: the retried step's is taken after the clock moved.
                Advance(LeaseDuration + TimeSpan.FromSeconds(1));
                var sweep = await Queue.RequeueExpiredLeasesAsync(Timeout);
                Assert.Equal(1, sweep.Count);
                Assert.Empty(sweep.Ended);
                break;
            case StepLeaseEnd.HandedBack:
                await Queue.ReleaseAsync([lease.Ref], Timeout);
                break;
            case StepLeaseEnd.InterruptedAndAbandoned:
                var abandoned = await Queue.AbandonLeasesAsync(WorkerId, Timeout);
                Assert.Empty(abandoned.Ended);
                break;
        }
    }

    [Theory]
    [InlineData(StepLeaseEnd.Expired)]
    [InlineData(StepLeaseEnd.HandedBack)]
    [InlineData(StepLeaseEnd.InterruptedAndAbandoned)]
    public async Task A_step_leased_at_its_workflows_retry_whose_lease_ends_unfinished_waits_in_pending_for_the_retried_steps(StepLeaseEnd end)
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(end);

        // Its lease ends with a, which the retry ran again, not ended: it waits for a, not in its queue.
        await EndLeaseAsync(end, leased);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        // a's end releases it, with the attempts it had (an unstarted lease spent none).
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        Assert.Equal(end == StepLeaseEnd.InterruptedAndAbandoned ? 2 : 1, complete.Value.Attempt);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        await RunLastStepAsync(workflow, "report");
    }

    [Theory]
    [InlineData(StepLeaseEnd.Expired)]
    [InlineData(StepLeaseEnd.HandedBack)]
    [InlineData(StepLeaseEnd.InterruptedAndAbandoned)]
    public async Task A_step_leased_at_its_workflows_retry_whose_lease_ends_unfinished_after_the_retried_steps_ended_is_queued(StepLeaseEnd end)
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(end);
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        // a's success released nothing: "complete" is still leased, and runs on.
        Assert.Equal(TaskState.Running, await StateOf(workflow, "complete"));
        Assert.Empty(await FetchAsync());

        await EndLeaseAsync(end, leased);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "complete"));
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        await RunLastStepAsync(workflow, "report");
    }

    [Theory]
    [InlineData("before")]
    [InlineData("after")]
    [InlineData("together")]
    public async Task A_step_leased_at_its_workflows_retry_that_succeeds_runs_once_and_releases_its_dependents_once(string retriedStepsEnd)
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(StepLeaseEnd.HandedBack);
        var a = Assert.Single(await FetchStepsAsync()).Value;
        if (retriedStepsEnd == "after")
        {
            await Queue.CompleteAsync([Succeeded(a)], Timeout);
            Assert.Empty(await FetchAsync());
        }
        // Together: a's success and its own in one completion batch.
        await Queue.CompleteAsync(retriedStepsEnd == "together" ? [Succeeded(a), Succeeded(leased)] : [Succeeded(leased)], Timeout);
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        var report = Assert.Single(await FetchStepsAsync());
        Assert.Equal("report", report.Key);
        await Queue.CompleteAsync([Succeeded(report.Value)], Timeout);
        if (retriedStepsEnd == "before")
        {
            // a's end later finds "complete" succeeded: it queues nothing again.
            Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
            await Queue.CompleteAsync([Succeeded(a)], Timeout);
        }
        Assert.Empty(await FetchAsync());
        Assert.Equal(TaskState.Succeeded, await StateOf(workflow, "complete"));
        Assert.Equal(WorkflowState.Succeeded, (await WorkflowOf(workflow)).State);
        var task = await Store.GetAsync(TaskOf(workflow, "complete"), Timeout);
        Assert.Single(task!.Transitions, t => t.State == TaskState.Running);
        var reportTask = await Store.GetAsync(TaskOf(workflow, "report"), Timeout);
        Assert.Single(reportTask!.Transitions, t => t.State == TaskState.Queued);
    }

    [Fact]
    public async Task A_step_held_back_after_its_lease_ended_is_released_by_the_end_of_a_retried_step_that_fails_again_under_stop()
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(StepLeaseEnd.HandedBack);
        await EndLeaseAsync(StepLeaseEnd.HandedBack, leased);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));

        // a fails again: the stop fails the workflow, cancels "report", and spares "complete", which a's end releases.
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        await Queue.CompleteAsync([Dead(a.Value)], Timeout);
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "report"));
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        Assert.Empty(await FetchAsync());
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
    }

    /// <summary>x (stop) fails first and its stop cancels y (queued) and d (pending): "complete", after x and d, is spared
    /// and released, and leased (and started when <paramref name="started"/>). After the retry, y's failure under continue
    /// leaves d pending for good, and x succeeds: "complete" is the only step active.</summary>
    private async Task<(NewWorkflow Workflow, Lease Complete)> HeldBackByAStepThatCanNeverRunAsync(bool started)
    {
        var workflow = WithAllEnded(WithPolicy(NewWorkflow(("x", []), ("y", []), ("d", ["y"]), ("complete", ["x", "d"])), WorkflowFailurePolicy.Stop, "y"), "complete");
        await Workflows.CreateWorkflowAsync(workflow, Timeout);
        var first = await FetchStepsAsync();
        Assert.Equal(["x", "y"], first.Keys.Order());
        await Queue.ReleaseAsync([first["y"].Ref], Timeout);
        await Queue.CompleteAsync([Dead(first["x"])], Timeout);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "y"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "d"));
        var leased = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", leased.Key);
        if (started)
        {
            Assert.Empty(await Queue.StartAsync([leased.Value.Ref], Timeout));
        }

        Assert.True(await Workflows.RetryWorkflowAsync(workflow.Id, Timeout));
        var retried = await FetchStepsAsync();
        Assert.Equal(["x", "y"], retried.Keys.Order());
        await Queue.CompleteAsync([Dead(retried["y"])], Timeout);
        await Queue.CompleteAsync([Succeeded(retried["x"])], Timeout);
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);
        return (workflow, leased.Value);
    }

    [Theory]
    [InlineData(StepLeaseEnd.Expired)]
    [InlineData(StepLeaseEnd.HandedBack)]
    [InlineData(StepLeaseEnd.InterruptedAndAbandoned)]
    public async Task A_step_held_back_by_a_step_that_can_never_run_ends_its_workflow_when_nothing_else_is_active(StepLeaseEnd end)
    {
        var (workflow, leased) = await HeldBackByAStepThatCanNeverRunAsync(started: end == StepLeaseEnd.InterruptedAndAbandoned);

        // Its lease ends with d pending for good and nothing else active: the workflow ends, and both are cancelled. The
        // lease's end, a sweep's or a hand-back's by id, names the step as ended, so that the workflow's end is announced.
        var cancelled = new EndedLease(TaskOf(workflow, "complete"), TaskState.Cancelled);
        switch (end)
        {
            case StepLeaseEnd.Expired:
                Advance(LeaseDuration + TimeSpan.FromSeconds(1));
                Assert.Equal([cancelled], (await Queue.RequeueExpiredLeasesAsync(Timeout)).Ended);
                break;
            case StepLeaseEnd.HandedBack:
                var handedBack = await Queue.ReleaseAsync([leased.Ref], Timeout);
                Assert.Equal(1, handedBack.Count);
                Assert.Equal([cancelled], handedBack.Ended);
                break;
            case StepLeaseEnd.InterruptedAndAbandoned:
                Assert.Equal([cancelled], (await Queue.AbandonLeasesAsync(WorkerId, Timeout)).Ended);
                break;
        }
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "d"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "complete"));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_step_held_back_by_a_step_that_can_never_run_ends_its_workflow_when_its_attempt_asks_for_a_retry()
    {
        var (workflow, leased) = await HeldBackByAStepThatCanNeverRunAsync(started: true);

        // Its attempt asks for a retry while d, pending for good, holds it back and nothing else is active: it goes back to
        // pending, and the workflow ends with it cancelled, as at its lease's end. The completion is reported as it left
        // the step, pending (its workflow's end is its own event).
        Assert.Equal([new CompletionOverride(leased.Ref, TaskState.Pending)], await Queue.CompleteAsync([RetryLater(leased)], Timeout));
        Assert.Equal(WorkflowState.Failed, (await WorkflowOf(workflow)).State);
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "d"));
        Assert.Equal(TaskState.Cancelled, await StateOf(workflow, "complete"));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Empty(await FetchAsync());
    }

    [Fact]
    public async Task A_hand_back_by_id_reports_the_tasks_it_ended_for_good()
    {
        // A plain task whose cancel was asked while it was leased, and a step whose hand-back ends it the same way.
        await Queue.EnqueueAsync([NewMessage()], Timeout);
        var lease = Assert.Single(await FetchAsync());
        Assert.Equal(CancelOutcome.Requested, await Queue.CancelAsync(lease.Message.Id, Timeout));
        var sweep = await Queue.ReleaseAsync([lease.Ref], Timeout);
        Assert.Equal(1, sweep.Count);
        Assert.Equal([new EndedLease(lease.Message.Id, TaskState.Cancelled)], sweep.Ended);
        // A lease no longer held ends nothing.
        var none = await Queue.ReleaseAsync([lease.Ref], Timeout);
        Assert.Equal(0, none.Count);
        Assert.Empty(none.Ended);
    }

    /// <summary>A completion of <paramref name="lease"/> whose attempt failed and asks for a retry in a minute (its own
    /// retry policy).</summary>
    private Completion RetryLater(Lease lease) => new()
    {
        Lease = lease.Ref,
        Kind = CompletionKind.Retry,
        Attempt = lease.Attempt,
        RetryAt = Now.AddMinutes(1),
        Error = new TaskError("Test.Failure", "failed for the test"),
        At = Now,
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_step_leased_at_its_workflows_retry_whose_attempt_asks_for_a_retry_waits_in_pending_for_the_retried_steps(bool started)
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(started ? StepLeaseEnd.InterruptedAndAbandoned : StepLeaseEnd.HandedBack);

        // Its attempt asks for a retry of its own (in a minute) while a, which the retry ran again, holds it back: it waits
        // for a in pending, not for its retry's time, and keeps the attempt it ran; the caller hears it is pending.
        Assert.Equal([new CompletionOverride(leased.Ref, TaskState.Pending)], await Queue.CompleteAsync([RetryLater(leased)], Timeout));
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        Assert.Equal(1, (await Store.GetAsync(TaskOf(workflow, "complete"), Timeout))!.Attempts);
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        Assert.Equal(TaskState.Pending, await StateOf(workflow, "complete"));
        Assert.Equal(WorkflowState.Running, (await WorkflowOf(workflow)).State);

        // a's success releases it at once (the retry's wait is dropped), for its second attempt.
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        Assert.Equal(2, complete.Value.Attempt);
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        await RunLastStepAsync(workflow, "report");
        var task = await Store.GetAsync(TaskOf(workflow, "complete"), Timeout);
        Assert.Equal(2, task!.Transitions.Count(t => t.State == TaskState.Running));
        Assert.DoesNotContain(task.Transitions, t => t.State == TaskState.Retrying);
    }

    [Fact]
    public async Task A_step_leased_at_its_workflows_retry_whose_attempt_asks_for_a_retry_with_a_retried_step_ending_in_the_same_batch_runs_after_it()
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(StepLeaseEnd.HandedBack);
        var a = Assert.Single(await FetchStepsAsync()).Value;

        // Its retry and a's success in one completion batch, its retry first: a's success releases it, whatever the order
        // the backend writes them in; never left pending.
        await Queue.CompleteAsync([RetryLater(leased), Succeeded(a)], Timeout);
        var state = await StateOf(workflow, "complete");
        if (state == TaskState.Retrying)
        {
            // a's success was written first: it retried as any step whose count is 0.
            Advance(TimeSpan.FromMinutes(2));
            Assert.Equal(1, await Queue.PromoteDueAsync(Timeout));
        }
        else
        {
            Assert.Equal(TaskState.Queued, state);
        }
        var complete = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", complete.Key);
        Assert.Equal(2, complete.Value.Attempt);
        // Nothing holds it back any more, either way: a hand-back of its lease queues it.
        await Queue.ReleaseAsync([complete.Value.Ref], Timeout);
        Assert.Equal(TaskState.Queued, await StateOf(workflow, "complete"));
        complete = Assert.Single(await FetchStepsAsync());
        await Queue.CompleteAsync([Succeeded(complete.Value)], Timeout);
        await RunLastStepAsync(workflow, "report");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_step_leased_at_its_workflows_retry_whose_attempt_asks_for_a_retry_after_the_retried_steps_ended_retries_as_any_task(bool thenHandedBack)
    {
        var (workflow, leased) = await RetriedWithCompleteLeasedAsync(StepLeaseEnd.HandedBack);
        var a = Assert.Single(await FetchStepsAsync());
        Assert.Equal("a", a.Key);
        await Queue.CompleteAsync([Succeeded(a.Value)], Timeout);
        Assert.Equal(TaskState.Running, await StateOf(workflow, "complete"));

        // Nothing holds it back any more: its retry waits for its time, as any task's.
        await Queue.CompleteAsync([RetryLater(leased)], Timeout);
        Assert.Equal(TaskState.Retrying, await StateOf(workflow, "complete"));
        Assert.Equal(0, await Queue.PromoteDueAsync(Timeout));
        Assert.Empty(await FetchAsync());
        Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await Queue.PromoteDueAsync(Timeout));
        var again = Assert.Single(await FetchStepsAsync());
        Assert.Equal("complete", again.Key);
        Assert.Equal(2, again.Value.Attempt);
        if (thenHandedBack)
        {
            // Its next lease's end is queued, as any task's: its count was spent.
            await Queue.ReleaseAsync([again.Value.Ref], Timeout);
            Assert.Equal(TaskState.Queued, await StateOf(workflow, "complete"));
            again = Assert.Single(await FetchStepsAsync());
        }
        await Queue.CompleteAsync([Succeeded(again.Value)], Timeout);
        await RunLastStepAsync(workflow, "report");
    }
}

/// <summary>How a lease ends without an outcome, in the tests of a step leased at its workflow's retry.</summary>
public enum StepLeaseEnd
{
    /// <summary>It runs out unstarted and the reaper ends it.</summary>
    Expired,

    /// <summary>The worker hands it back unstarted.</summary>
    HandedBack,

    /// <summary>Its handler started, then the worker's leases were abandoned (its process died).</summary>
    InterruptedAndAbandoned,
}
