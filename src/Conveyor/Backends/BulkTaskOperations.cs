namespace Conveyor.Backends;

/// <summary>
/// Bulk retry and purge of finished tasks by filter, on any backend, in bounded steps: each step reads one page of the
/// task list (<see cref="ITaskStore.ListAsync"/>, newest first, at most <c>batchSize</c> tasks) and acts on the matches
/// of that page alone (<see cref="IQueueBackend.RetryAsync"/> per task, or one <see cref="ITaskStore.DeleteAsync"/>), so
/// no call holds a transaction, a lock or a script over more than one page, however many tasks match. Steps go on until
/// the list ends or the filter's limit is reached; a cancelled call keeps what its finished steps did.
/// </summary>
/// <remarks>The list pages by a cursor on the enqueue sequence, which retrying and deleting leave alone: each task is
/// seen once, and a task that a retry sends back to the queue and that fails again meanwhile is not retried twice by
/// one call. The finish-time filters are checked on the page's records, so a narrow time window over a long state
/// reads the state's whole list, a page at a time.</remarks>
public static class BulkTaskOperations
{
    /// <summary>Queues every task matching <paramref name="filter"/> again with a fresh set of attempts, as
    /// <see cref="IQueueBackend.RetryAsync"/> does one; calls <paramref name="retried"/> with each. Returns how many.</summary>
    /// <exception cref="TaskValidationException">The filter is not valid for a retry (<see cref="TaskFilter.Validate"/>).</exception>
    public static async Task<int> RetryAsync(IConveyorBackend backend, TaskFilter filter, int batchSize,
        Action<TaskRecord>? retried, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Check(filter, purge: false);
        var count = 0;
        await foreach (var page in PagesAsync(backend.Store, filter, batchSize, () => count, cancellationToken).ConfigureAwait(false))
        {
            // Workflow steps are left to their workflow's retry (RetryOutcome.WorkflowStep).
            foreach (var record in page.Where(r => Workflows.WorkflowHeaders.StepOf(r.Headers).WorkflowId is null))
            {
                if (await backend.Queue.RetryAsync(record.Id, cancellationToken).ConfigureAwait(false) == RetryOutcome.Requeued)
                {
                    count++;
                    retried?.Invoke(record);
                }
            }
        }
        return count;
    }

    /// <summary>Deletes every task matching <paramref name="filter"/>, a page per <see cref="ITaskStore.DeleteAsync"/>
    /// call. Returns how many.</summary>
    /// <exception cref="TaskValidationException">The filter is not valid for a purge (<see cref="TaskFilter.Validate"/>).</exception>
    public static async Task<int> PurgeAsync(IConveyorBackend backend, TaskFilter filter, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Check(filter, purge: true);
        var count = 0;
        await foreach (var page in PagesAsync(backend.Store, filter, batchSize, () => count, cancellationToken).ConfigureAwait(false))
        {
            count += await backend.Store.DeleteAsync(page.Select(r => r.Id).ToList(), filter.State, cancellationToken).ConfigureAwait(false);
        }
        return count;
    }

    private static void Check(TaskFilter filter, bool purge)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var errors = filter.Validate(purge);
        if (errors.Count > 0)
        {
            throw new TaskValidationException(errors);
        }
    }

    /// <summary>The matches of each page, cut so that at most the filter's limit less what was done so far
    /// (<paramref name="done"/>) is handed out.</summary>
    private static async IAsyncEnumerable<List<TaskRecord>> PagesAsync(ITaskStore store, TaskFilter filter, int batchSize, Func<int> done,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var limit = filter.Limit ?? int.MaxValue;
        string? cursor = null;
        do
        {
            var left = limit - done();
            if (left <= 0)
            {
                yield break;
            }
            var page = await store.ListAsync(new TaskQuery
            {
                State = filter.State,
                Task = filter.Task,
                Queue = filter.Queue,
                Cursor = cursor,
                Limit = Math.Min(batchSize, left),
            }, cancellationToken).ConfigureAwait(false);
            var matches = page.Items.Where(filter.Matches).ToList();
            if (matches.Count > 0)
            {
                yield return matches;
            }
            cursor = page.NextCursor;
        }
        while (cursor is not null);
    }
}
