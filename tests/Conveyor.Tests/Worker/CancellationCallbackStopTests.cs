using System.Diagnostics;
using Conveyor.Backends;
using Conveyor.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Worker;

/// <summary>
/// Npgsql ends a call in flight inside its cancellation token's callback, synchronously: it sends PostgreSQL's cancel
/// request and waits for the server to close that connection, for up to its connection timeout (15 s) when the server does
/// not answer (measured through a relay that stops forwarding). Whoever cancels such a token is held that long. The
/// worker's stop is bounded (graceful timeout plus 7 s, docs/operations.md): none of the tokens it cancels on its way may
/// hold it. Each test here holds the cancelling thread for 20 s in a callback registered the way Npgsql registers its own,
/// on a call that does not answer; the stop must end well before.
/// </summary>
public sealed class CancellationCallbackStopTests : IDisposable
{
    private static readonly TimeSpan Held = TimeSpan.FromSeconds(20);
    // The stop's own bound here is 1 s of grace plus 7 s; the callbacks hold for 20 s. A sanity bound for a shared
    // machine, not a timing measurement.
    private static readonly TimeSpan StopBound = TimeSpan.FromSeconds(12);

    // Lets every held callback go at the test's end, so that no thread stays blocked past it.
    private readonly ManualResetEventSlim _letGo = new();

    public void Dispose()
    {
        _letGo.Set();
        _letGo.Dispose();
    }

    [Fact]
    public async Task A_heartbeat_under_way_whose_cancellation_blocks_does_not_hold_the_stop()
    {
        var coordination = new StallingCoordination(HoldCancellingThread);
        using var host = Build(inner => new WatchedBackend(inner, inner.Queue, coordination: coordination.Wrap(inner.Coordination)));
        await host.StartAsync();
        coordination.Cut();
        await coordination.Stalled.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var stopping = Stopwatch.StartNew();
        await host.StopAsync();

        // Not the stop's budget either (1 s of grace plus 7 s): the heartbeat is not waited for once its loop stops.
        Assert.InRange(stopping.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_fetch_under_way_whose_cancellation_blocks_does_not_hold_the_stop()
    {
        var stalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var never = new TaskCompletionSource();
        using var host = Build(inner => new WatchedBackend(inner, FetchObserver.Wrap(inner.Queue, askedWithToken: (_, token) =>
        {
            if (token.IsCancellationRequested)
            {
                // As Npgsql does: a call asked with a cancelled token ends at once.
                return Task.FromCanceled(token);
            }
            // As Npgsql does: the call registers its own ending on the token, and does not answer.
            token.Register(HoldCancellingThread);
            stalled.TrySetResult();
            return never.Task;
        })));
        await host.StartAsync();
        await stalled.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var stopping = Stopwatch.StartNew();
        // The host cancels the worker's stopping token on this very call's thread (BackgroundService.StopAsync).
        await host.StopAsync();

        Assert.InRange(stopping.Elapsed, TimeSpan.Zero, StopBound);
    }

    [Fact]
    public async Task A_handler_whose_token_blocks_when_cancelled_does_not_hold_the_stop_past_its_bound()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var host = Build(inner => inner, builder => builder.Services.AddSingleton(new BlockingHandlerProbe(started, HoldCancellingThread)),
            conveyor => conveyor.AddTask<BlockingTask>(BlockingTask.Name));
        await host.StartAsync();
        await host.Services.GetRequiredService<ITaskClient>().EnqueueAsync(new TaskRequest(BlockingTask.Name));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var stopping = Stopwatch.StartNew();
        // The grace (1 s) runs out; the hard stop cancels the handler's token, whose callback holds for 20 s.
        await host.StopAsync();

        Assert.InRange(stopping.Elapsed, TimeSpan.Zero, StopBound);
    }

    [Fact]
    public async Task A_handler_whose_token_blocks_when_cancelled_does_not_hold_back_another_handlers_cancellation()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cooperative = new CooperativeProbe();
        using var host = Build(inner => inner, builder =>
            {
                builder.Services.AddSingleton(new BlockingHandlerProbe(started, HoldCancellingThread));
                builder.Services.AddSingleton(cooperative);
            },
            conveyor => conveyor.AddTask<BlockingTask>(BlockingTask.Name).AddTask<CooperativeTask>(CooperativeTask.Name));
        await host.StartAsync();
        var client = host.Services.GetRequiredService<ITaskClient>();
        // The cooperative one first: the blocking one's token, linked to the hard stop after it, is cancelled first there
        // (a source runs its callbacks newest first, one after another).
        await client.EnqueueAsync(new TaskRequest(CooperativeTask.Name));
        await cooperative.Started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await client.EnqueueAsync(new TaskRequest(BlockingTask.Name));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        await host.StopAsync();

        // It honours its token: cancelled at the hard stop (1 s of grace), it has ended by the stop's end, not 20 s later.
        Assert.True(cooperative.Ended.Task.IsCompleted, "the cooperative handler was not cancelled by the stop's end");
    }

    private void HoldCancellingThread() => _letGo.Wait(Held);

    private static IHost Build(Func<IConveyorBackend, IConveyorBackend> wrap, Action<HostApplicationBuilder>? configure = null,
        Action<ConveyorBuilder>? tasks = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        var conveyor = builder.Services.AddConveyor(o =>
            {
                o.Worker.ShutdownTimeout = TimeSpan.FromSeconds(1);
                o.Worker.Concurrency = 2;
                o.Worker.HeartbeatInterval = TimeSpan.FromMilliseconds(100);
            })
            .UseInMemoryBackend()
            .UseBackend(sp => wrap(sp.GetRequiredService<InMemoryBackend>()));
        tasks?.Invoke(conveyor);
        configure?.Invoke(builder);
        return builder.Build();
    }

    /// <summary>The coordination role as it is, until <see cref="Cut"/>: from then on a heartbeat does not answer, and
    /// its token's cancellation holds the cancelling thread (as Npgsql's cancel request to a server that does not).</summary>
    private sealed class StallingCoordination(Action hold)
    {
        public Action Hold { get; } = hold;

        private volatile bool _cut;

        public TaskCompletionSource Stalled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Cut() => _cut = true;

        public ICoordinationBackend Wrap(ICoordinationBackend inner) => new Wrapper(inner, this);

        private sealed class Wrapper(ICoordinationBackend inner, StallingCoordination stalling) : ICoordinationBackend
        {
            public Task HeartbeatAsync(WorkerInfo worker, CancellationToken cancellationToken)
            {
                if (!stalling._cut)
                {
                    return inner.HeartbeatAsync(worker, cancellationToken);
                }
                if (cancellationToken.IsCancellationRequested)
                {
                    return Task.FromCanceled(cancellationToken);
                }
                cancellationToken.Register(stalling.Hold);
                stalling.Stalled.TrySetResult();
                return new TaskCompletionSource().Task;
            }

            public Task RemoveWorkerAsync(string workerId, CancellationToken cancellationToken) => inner.RemoveWorkerAsync(workerId, cancellationToken);

            public Task<IReadOnlyList<WorkerInfo>> ListWorkersAsync(DateTimeOffset seenSince, CancellationToken cancellationToken) =>
                inner.ListWorkersAsync(seenSince, cancellationToken);

            public Task<bool> TryAcquireLeadershipAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken) =>
                inner.TryAcquireLeadershipAsync(name, owner, ttl, cancellationToken);

            public Task ReleaseLeadershipAsync(string name, string owner, CancellationToken cancellationToken) =>
                inner.ReleaseLeadershipAsync(name, owner, cancellationToken);
        }
    }

    private sealed record BlockingHandlerProbe(TaskCompletionSource Started, Action Hold);

    private sealed class CooperativeProbe
    {
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Runs until its token is cancelled, and ends then.</summary>
    private sealed class CooperativeTask(CooperativeProbe probe) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.cooperative";

        public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            probe.Started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            finally
            {
                probe.Ended.TrySetResult();
            }
        }
    }

    /// <summary>A handler whose own call does not answer and ends inside its token's callback, holding the thread
    /// that cancels it (a handler's Npgsql command against a database that does not answer).</summary>
    private sealed class BlockingTask(BlockingHandlerProbe probe) : ITaskHandler<NoArgs>
    {
        public const string Name = "test.blocking-cancellation";

        public async Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken)
        {
            var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var registration = cancellationToken.Register(() =>
            {
                probe.Hold();
                ended.TrySetResult();
            });
            probe.Started.TrySetResult();
            await ended.Task;
        }
    }
}
