using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Carries task events between the processes on a backend, through its notifier, while someone watches them. A process
/// with a subscriber that wants every process's events (the event stream, the dashboard) says so on
/// <see cref="NotifierChannels.EventsWanted"/> at once and every <see cref="AnnounceInterval"/>; a process that hears it
/// publishes its own events on <see cref="NotifierChannels.Events"/> for <see cref="WantedFor"/> after, in batches that
/// fit the notifier's payload limit (what arrives while one batch is sent makes the next: no added delay); every process
/// passes the events of others to its subscribers. When nobody watches, nothing is sent and no event is even built.
/// </summary>
/// <remarks>Events are for watching, not for keeping: a batch that cannot be sent (a broken connection, more than
/// <see cref="BufferSize"/> events waiting) is dropped and logged once per outage.</remarks>
internal sealed partial class TaskEventBridge(
    IConveyorBackend backend,
    TaskEventBus bus,
    WorkerStatus status,
    TimeProvider time,
    ILogger<TaskEventBridge> logger) : BackgroundService
{
    /// <summary>How often a watching process repeats that it wants events: 5 s.</summary>
    internal static readonly TimeSpan AnnounceInterval = TimeSpan.FromSeconds(5);

    /// <summary>How long a process publishes its events after it last heard that someone wants them: 3 announcements.</summary>
    internal static readonly TimeSpan WantedFor = AnnounceInterval * 3;

    /// <summary>Most events waiting to be sent; more are dropped.</summary>
    internal const int BufferSize = 10_000;

    private readonly Channel<TaskEvent> _outgoing = Channel.CreateBounded<TaskEvent>(
        new BoundedChannelOptions(BufferSize) { SingleReader = true, SingleWriter = false, FullMode = BoundedChannelFullMode.Wait });
    private readonly Channel<WorkflowEvent> _outgoingWorkflows = Channel.CreateBounded<WorkflowEvent>(
        new BoundedChannelOptions(BufferSize) { SingleReader = true, SingleWriter = false, FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Lock _gate = new();
    private long _wantedUntilTicks;
    private IDisposable? _localSubscription;
    private IDisposable? _localWorkflowSubscription;
    private bool _sendFailing;
    // 1 from the first event dropped on a full buffer until a batch is sent again: logged once per spell.
    private int _dropping;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        await Task.Yield();
        IAsyncDisposable? events = null;
        IAsyncDisposable? wanted = null;
        IAsyncDisposable? workflowEvents = null;
        try
        {
            events = await backend.Notifier.SubscribeAsync(NotifierChannels.Events, OnEvents, stoppingToken).ConfigureAwait(false);
            workflowEvents = await backend.Notifier.SubscribeAsync(NotifierChannels.WorkflowEvents, OnWorkflowEvents, stoppingToken).ConfigureAwait(false);
            wanted = await backend.Notifier.SubscribeAsync(NotifierChannels.EventsWanted, OnWanted, stoppingToken).ConfigureAwait(false);
            await Task.WhenAll(AnnounceLoopAsync(stoppingToken), SendLoopAsync(stoppingToken), SendWorkflowsLoopAsync(stoppingToken),
                ExpireLoopAsync(stoppingToken)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Without a notifier the event stream shows this process's events only.
            LogBridgeFailed(ex);
        }
        finally
        {
            StopPublishing();
            if (events is not null)
            {
                await events.DisposeAsync().ConfigureAwait(false);
            }
            if (wanted is not null)
            {
                await wanted.DisposeAsync().ConfigureAwait(false);
            }
            if (workflowEvents is not null)
            {
                await workflowEvents.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>While this process has subscribers that want remote events, says so at once and every
    /// <see cref="AnnounceInterval"/>.</summary>
    private async Task AnnounceLoopAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var changed = bus.RemoteInterestChanged;
            if (bus.RemoteSubscribers > 0)
            {
                try
                {
                    await backend.Notifier.PublishAsync(NotifierChannels.EventsWanted, status.WorkerId, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    LogSendFailed(ex);
                }
                await Task.WhenAny(changed, Task.Delay(AnnounceInterval, time, stoppingToken)).ConfigureAwait(false);
            }
            else
            {
                await changed.WaitAsync(stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private void OnWanted(Notification notification)
    {
        if (notification.Missed || notification.Payload == status.WorkerId)
        {
            // This process's own subscribers see its events directly.
            return;
        }
        Interlocked.Exchange(ref _wantedUntilTicks, (time.GetUtcNow() + WantedFor).UtcTicks);
        lock (_gate)
        {
            // Wait mode, written with TryWrite only: nothing waits, and a full buffer is seen (DropWrite would hide it).
            _localSubscription ??= bus.Subscribe(e =>
            {
                if (!_outgoing.Writer.TryWrite(e) && Interlocked.Exchange(ref _dropping, 1) == 0)
                {
                    LogDropped(BufferSize);
                }
            });
            // Workflow events are few (a handful per workflow): dropped without a word when the buffer is full.
            _localWorkflowSubscription ??= bus.SubscribeWorkflows(e => _outgoingWorkflows.Writer.TryWrite(e));
        }
    }

    /// <summary>Stops collecting this process's events once nobody has asked for them for <see cref="WantedFor"/>.</summary>
    private async Task ExpireLoopAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(AnnounceInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            if (!IsWanted)
            {
                StopPublishing();
            }
        }
    }

    private void StopPublishing()
    {
        lock (_gate)
        {
            _localSubscription?.Dispose();
            _localSubscription = null;
            _localWorkflowSubscription?.Dispose();
            _localWorkflowSubscription = null;
        }
    }

    private bool IsWanted => time.GetUtcNow().UtcTicks < Interlocked.Read(ref _wantedUntilTicks);

    private Task SendLoopAsync(CancellationToken stoppingToken) =>
        SendLoopAsync(_outgoing.Reader, TaskEventJson.Write, NotifierChannels.Events, stoppingToken);

    private Task SendWorkflowsLoopAsync(CancellationToken stoppingToken) =>
        SendLoopAsync(_outgoingWorkflows.Reader, WorkflowEventKinds.Write, NotifierChannels.WorkflowEvents, stoppingToken);

    /// <summary>Sends the events of <paramref name="reader"/> on <paramref name="channel"/> while they are wanted: those
    /// that came together in one notification, as JSON arrays that fit the notifier's payload limit.</summary>
    private async Task SendLoopAsync<TEvent>(ChannelReader<TEvent> reader, Action<Utf8JsonWriter, TEvent> write, string channel,
        CancellationToken stoppingToken)
    {
        var limit = backend.Capabilities.MaxNotificationPayload;
        var batch = new ArrayBufferWriter<byte>(limit);
        var one = new ArrayBufferWriter<byte>(512);
        var count = 0;
        while (await reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
        {
            if (!IsWanted)
            {
                // Raised before interest lapsed and the subscription ended: nobody wants them.
                while (reader.TryRead(out _))
                {
                }
                continue;
            }
            while (reader.TryRead(out var item))
            {
                one.ResetWrittenCount();
                using (var writer = new Utf8JsonWriter(one))
                {
                    write(writer, item);
                }
                // "[" + events joined by "," + "]": flush first when this one would not fit.
                if (count > 0 && batch.WrittenCount + 1 + one.WrittenCount + 1 > limit)
                {
                    await SendAsync(batch, channel, stoppingToken).ConfigureAwait(false);
                    batch.ResetWrittenCount();
                    count = 0;
                }
                if (one.WrittenCount + 2 > limit)
                {
                    // One event longer than a notification can carry (a long task name): not sent.
                    continue;
                }
                batch.Write(count == 0 ? "["u8 : ","u8);
                batch.Write(one.WrittenSpan);
                count++;
            }
            if (count > 0)
            {
                await SendAsync(batch, channel, stoppingToken).ConfigureAwait(false);
                batch.ResetWrittenCount();
                count = 0;
            }
        }
    }

    private async Task SendAsync(ArrayBufferWriter<byte> batch, string channel, CancellationToken stoppingToken)
    {
        batch.Write("]"u8);
        var payload = Encoding.UTF8.GetString(batch.WrittenSpan);
        try
        {
            await backend.Notifier.PublishAsync(channel, payload, stoppingToken).ConfigureAwait(false);
            _sendFailing = false;
            Volatile.Write(ref _dropping, 0);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            if (!_sendFailing)
            {
                _sendFailing = true;
                LogSendFailed(ex);
            }
        }
    }

    private void OnEvents(Notification notification) => Receive(notification, element =>
    {
        var taskEvent = TaskEventJson.Read(element);
        if (taskEvent.Origin != status.WorkerId)
        {
            bus.PublishRemote(taskEvent);
        }
    });

    private void OnWorkflowEvents(Notification notification) => Receive(notification, element =>
    {
        var workflowEvent = WorkflowEventKinds.Read(element);
        if (workflowEvent.Origin != status.WorkerId)
        {
            bus.PublishRemoteWorkflow(workflowEvent);
        }
    });

    /// <summary>Passes each event of another process's batch to <paramref name="publish"/>, while someone here wants them.</summary>
    private void Receive(Notification notification, Action<JsonElement> publish)
    {
        if (notification.Missed || bus.RemoteSubscribers == 0)
        {
            return;
        }
        try
        {
            using var document = JsonDocument.Parse(notification.Payload);
            foreach (var element in document.RootElement.EnumerateArray())
            {
                publish(element);
            }
        }
        catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException)
        {
            LogMalformed(ex);
        }
    }

    [LoggerMessage(50, LogLevel.Warning, "Task events cannot travel between processes: the notifier failed")]
    private partial void LogBridgeFailed(Exception exception);

    [LoggerMessage(51, LogLevel.Warning, "Sending task events to other processes failed; events are dropped until it works again")]
    private partial void LogSendFailed(Exception exception);

    [LoggerMessage(53, LogLevel.Warning, "More than {BufferSize} task events wait to be sent to other processes; newer ones are dropped until the backlog is sent")]
    private partial void LogDropped(int bufferSize);

    [LoggerMessage(52, LogLevel.Warning, "A notification on the events channel was not a batch of task events; ignored")]
    private partial void LogMalformed(Exception exception);
}
