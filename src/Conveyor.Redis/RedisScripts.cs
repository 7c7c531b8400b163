namespace Conveyor.Redis;

/// <summary>
/// The Lua scripts behind every operation that changes more than one key. Each runs atomically in Redis,
/// so a fetch, a completion or a reaper pass is one round trip and never half done. Times come from the
/// caller (the backend's TimeProvider) as arguments: the scripts never read Redis TIME, and no key TTL
/// takes part in lease logic.
/// </summary>
/// <remarks>
/// Keys (B = <c>{prefix}:</c>, one hash tag, so one Cluster slot): <c>B t:{id}</c> task hash (<c>m</c>: the
/// immutable message, <see cref="RedisMessageCodec"/>; <c>task</c>, <c>queue</c>, <c>prio</c>, <c>seq</c>, <c>max</c>,
/// <c>key</c> copied out of it for the scripts; and the mutable fields); <c>B q:{queue}:ready</c> ready set (score:
/// priority band, then sequence), which is also the index of queued tasks; <c>B scheduled</c> (score: not-before ms);
/// <c>B leased</c> (score: lease expiry ms), which is also the index of running tasks; <c>B finished</c> (score: finish ms);
/// <c>B q:{queue}:s:{state}</c> for the other states (score: sequence); <c>B n:{task}</c> (score: sequence); no index
/// of all tasks (<see cref="ListAny"/> merges the others in one script); <c>B queues</c> (name → paused 0/1); <c>B schedules</c> (name → document) and <c>B schedules:v</c> (name → version); <c>B unique</c> (unique key → task id|claimed ms|window ms); <c>B idem</c> (idempotency key → id);
/// <c>B seq</c>; channel <c>B wake</c>. Nullable arguments are sent as "" for null and "v" + value otherwise.
/// </remarks>
/// <remarks>
/// A drain is bounded by Redis's one thread, so fetch and completion write as little as they can per task: a fetch
/// pops a range of the ready set and writes one hash and one leased-set entry; a completion writes the hash, and one
/// entry in each of the leased, finished and state sets. The running transition is recorded in the history only when
/// the task leaves running (its time is the <c>started</c> field), queued and running tasks have no index besides the
/// ready and leased sets, and a state is indexed per queue only (a listing across queues merges them).
/// </remarks>
/// <remarks>
/// The scripts are the embedded files Scripts/*.lua, read once when this class is first used: each is prelude.lua
/// (shared functions), the fragments it names, then its own file, without the last file's final newline.
/// </remarks>
internal static class RedisScripts
{
    private const string ResourcePrefix = "Conveyor.Redis.Scripts.";

    private static readonly string Prelude = Fragment("prelude.lua");

    /// <summary>Fields per message in <see cref="Enqueue"/>.</summary>
    public const int EnqueueFields = 9;

    /// <summary>ARGV: B, now, n, then per message: id, task, queue, prio, max, key?, nb?, exp?, m (the encoded message).
    /// Returns per message {id, created 0/1, state}. Fails whole, before any write, on a duplicate id.</summary>
    public static readonly string Enqueue = Script("enqueue.lua");

    /// <summary>Values per lease in the reply of <see cref="Fetch"/>.</summary>
    public const int FetchFields = 8;

    /// <summary>ARGV: B, now, expires, token, owner, max, nq, queues…. Returns, flat, per lease: id, m, nb, exp, attempt,
    /// redel, lapses (leases of the task that ended without an outcome; null for none), hdr (headers that replace the
    /// message's, set by a retry; null for none).</summary>
    /// <remarks>Per task one HMGET and one HSET; the sorted sets take one command per batch. The ready set is read with
    /// ZRANGE and trimmed with ZREMRANGEBYRANK rather than ZPOPMIN, whose reply carries every score as a formatted double.
    /// The new lease is unstarted without a write: it has a new token, and a lease started when <c>begun</c> holds its token.</remarks>
    public static readonly string Fetch = Script("fetch.lua");

    /// <summary>Fields per completion in <see cref="Complete"/>.</summary>
    public const int CompleteFields = 10;

    /// <summary>ARGV: B, n, then per completion: id, token, state, result?, error?, errorEntry?, retryAt?, at, unspent (0/1),
    /// headers? (StoredHeaders' text that replaces the message's headers on a retry: the <c>hdr</c> field). Returns, flat, per completion not
    /// settled as asked: its index in the batch (0-based) and the state it got, -1 when ignored (lease no longer held);
    /// empty when all were.</summary>
    /// <remarks>Per task one HMGET and one HSET (an HDEL only when a retried task's not-before must go); the sorted sets
    /// take one bulk command per key and batch.</remarks>
    public static readonly string Complete = Script("workflow.lua", "complete.lua");

    /// <summary>ARGV: B, expires, n, then id, token pairs. Returns per lease 0 (lost), 1 (held) or 2 (held, cancel asked).</summary>
    public static readonly string Extend = Script("extend.lua");

    /// <summary>ARGV: B, n, then id, token pairs. Records that the held ones started (<c>begun</c> = their token).
    /// Returns per lease 0 (lost) or 1 (held).</summary>
    public static readonly string Start = Script("start.lua");

    /// <summary>ARGV: B, now, error JSON, now as JSON, max interruptions, n, then id, token pairs. Hands back the held
    /// leases: an unstarted one (cancel not asked) goes back to its ready set, keeping its place and unspent; the others
    /// end by end_lease.lua. Returns how many leases ended, then the id and state of each task that ended for good (as
    /// end_leases: <c>{ count, id, state, … }</c>).</summary>
    public static readonly string Release = Script("workflow.lua", "end_lease.lua", "release.lua");

    /// <summary>ARGV: B, now, error JSON, now as JSON, max interruptions. Ends every lease that expired before now by
    /// end_lease.lua (<see cref="Conveyor.Backends.LeaseRules"/>). Returns how many.</summary>
    /// <remarks>end_lease.lua: a cancel asked cancels the task; an unstarted lease makes it ready again at its place with
    /// its attempt unspent; a started one records the interrupted error and makes it ready (redelivered), or dead at the
    /// bound. Every one but a cancel counts a lapse, which the next fetch reports (<c>RecordStartFirst</c>).</remarks>
    public static readonly string RequeueExpired = Script("workflow.lua", "end_lease.lua", "requeue_expired.lua");

    /// <summary>ARGV: B, owner, now, error JSON, now as JSON, max interruptions. Ends every lease the owner holds by
    /// end_lease.lua, as if it had run out. Returns how many.</summary>
    /// <remarks>Scans the leased set, which holds only the leases held now.</remarks>
    public static readonly string Abandon = Script("workflow.lua", "end_lease.lua", "abandon.lua");

    /// <summary>ARGV: B. Returns queue, count pairs of the running tasks (the leased set; running has no state index).</summary>
    public static readonly string RunningByQueue = Script("running_by_queue.lua");

    /// <summary>ARGV: B. Returns, flat, per queue with ready tasks: name, the ready time (ms; ETA or retry time, else
    /// enqueue) of the task at the head of its ready set — the oldest when its tasks share a priority.</summary>
    public static readonly string OldestReady = Script("oldest_ready.lua");

    /// <summary>ARGV: B, queue, before (exclusive sequence), limit. Returns, flat, id and sequence of up to limit queued
    /// tasks of the queue with a sequence below before, highest sequence first.</summary>
    /// <remarks>ready_range.lua appends to found the {id, seq} of up to limit entries of a queue's ready set with a sequence
    /// below before, highest first within each priority band (the set is ordered by band, then sequence: one range per band).</remarks>
    public static readonly string ListReady = Script("ready_range.lua", "list_ready.lua");

    /// <summary>ARGV: B, before (exclusive sequence), limit, queue ("" for all). Returns, flat, id and sequence of up to
    /// limit tasks in any state (of the queue, or of every queue) with a sequence below before, highest first.</summary>
    /// <remarks>Reads every index a task can be in — each queue's state sets and ready set, and the leased set — in one
    /// atomic script: read one after the other from the client, a task moving between two of them would be missed.</remarks>
    public static readonly string ListAny = Script("ready_range.lua", "list_any.lua");

    /// <summary>ARGV: B, now. Makes scheduled and retrying tasks due by now ready. Returns how many.</summary>
    public static readonly string Promote = Script("promote.lua");

    /// <summary>ARGV: B, id, now. Returns 0 not found, 1 cancelled, 2 requested, 3 already finished.</summary>
    public static readonly string Cancel = Script("workflow.lua", "cancel.lua");

    /// <summary>ARGV: B, id, now. Returns 0 not found, 1 requeued, 2 not retryable.</summary>
    public static readonly string Retry = Script("retry.lua");

    /// <summary>ARGV: B, before, max. Deletes up to max tasks finished before the time, with their index entries. Returns how many.</summary>
    public static readonly string Purge = Script("purge.lua");

    /// <summary>ARGV: B, before, max, scan. Deletes up to max workflows that ended before the time with nothing of them
    /// unfinished, with their steps' tasks (as <see cref="Purge"/> deletes a task) and graph, reading at most scan entries of
    /// the workflows index, oldest first. Returns how many.</summary>
    public static readonly string PurgeWorkflows = Script("purge_workflows.lua");

    /// <summary>ARGV: B, state, then ids. Deletes the tasks of the ids that are in the state (a terminal one), with their
    /// index entries and idempotency keys, as <see cref="Purge"/> does. Returns how many.</summary>
    public static readonly string Delete = Script("delete.lua");

    /// <summary>ARGV: B, name, owner, now, expires. Returns 1 when owner holds the leadership after the call.</summary>
    public static readonly string AcquireLeadership = Script("acquire_leadership.lua");

    /// <summary>ARGV: B, name, owner. Deletes the leadership if owner holds it.</summary>
    public static readonly string ReleaseLeadership = Script("release_leadership.lua");

    /// <summary>ARGV: B, name, version, document. Adds the schedule unless the name exists; returns 1 when added.</summary>
    public static readonly string AddSchedule = Script("add_schedule.lua");

    /// <summary>ARGV: B, name, version, document, expected version. Replaces the schedule when its stored version is the
    /// expected one; returns 1 when replaced.</summary>
    public static readonly string ReplaceSchedule = Script("replace_schedule.lua");

    /// <summary>ARGV: B, key, claim ("taskId|claimedAtMs|windowMs"), replacing task id or "". Stores the claim when the
    /// key has none (no id given) or its claim is the given task's; returns 1 when stored.</summary>
    public static readonly string ClaimUnique = Script("claim_unique.lua");

    /// <summary>ARGV: B, key, task id. Removes the key's claim if that task holds it.</summary>
    public static readonly string ReleaseUnique = Script("release_unique.lua");

    /// <summary>ARGV: B, key, now µs, span µs (interval × count). Returns the first reserved time (µs) and moves the key's
    /// next free time (<c>B lim:r:{key}</c>) to max(now, next free) + span.</summary>
    public static readonly string ReserveRate = Script("reserve_rate.lua");

    /// <summary>ARGV: B, key, limit, owner, now ms, expires ms, n, then id, token pairs. Drops the key's expired slots, then
    /// grants in order while fewer than limit are held (a task holding one keeps it). Returns 1 or 0 per pair.</summary>
    /// <remarks>limits.lua: the keys of a concurrency limit and what the slot scripts share.</remarks>
    public static readonly string AcquireSlots = Script("limits.lua", "acquire_slots.lua");

    /// <summary>ARGV: B, owner, n, then key, id, token triples. Frees those the owner holds under that token.</summary>
    public static readonly string ReleaseSlots = Script("limits.lua", "release_slots.lua");

    /// <summary>ARGV: B, owner, now ms, expires ms, n, then key, id, token triples. Returns 1 (extended) or 0 (not held,
    /// or expired) per triple.</summary>
    public static readonly string ExtendSlots = Script("limits.lua", "extend_slots.lua");

    /// <summary>ARGV: B, owner. Frees every slot the owner holds. Returns how many.</summary>
    public static readonly string ReleaseOwner = Script("limits.lua", "release_owner.lua");

    /// <summary>ARGV: B, now ms. Returns {rate key, next free µs, …} and {concurrency key, live slots, …}.</summary>
    public static readonly string LimitUsage = Script("limits.lua", "limit_usage.lua");

    /// <summary>The text of an embedded Scripts/*.lua file, with line ends as LF whatever the checkout did to them.</summary>
    /// <summary>Fields per step in <see cref="CreateWorkflow"/>.</summary>
    public const int CreateWorkflowFields = 13;

    /// <summary>ARGV: B, now, workflow id, name?, created ms, steps JSON, n, then per step: id, task, queue, prio, max, nb?,
    /// exp?, m (the encoded message), pend (how many steps it runs after), the task ids of those steps joined by commas,
    /// onf (failure policy), 1 for the error step, rw (1: released when all it runs after ended).
    /// Stores the workflow whole (workflow.lua names its keys), or fails before any write on a duplicate id.</summary>
    public static readonly string CreateWorkflow = Script("create_workflow.lua");

    /// <summary>ARGV: B, workflow id, now. Cancels a running workflow: marks it cancelled, cancels its steps that have not
    /// started and flags its running ones. Returns 1, or 0 when it is unknown or not running.</summary>
    public static readonly string CancelWorkflow = Script("workflow.lua", "cancel_workflow.lua");

    /// <summary>ARGV: B, workflow id, now, n, then per step: task id, 1 for the error step (else 0), the task ids of the
    /// steps it runs after joined by commas. Runs a failed or cancelled workflow again from its failed steps, and counts
    /// again every step that waits (pending, or released and not leased), pending while a step it runs after holds it
    /// back. Returns 1, or 0 when it is unknown or neither failed nor cancelled.</summary>
    public static readonly string RetryWorkflow = Script("workflow.lua", "retry_workflow.lua");

    internal static string Fragment(string file)
    {
        using var stream = typeof(RedisScripts).Assembly.GetManifestResourceStream(ResourcePrefix + file)
            ?? throw new InvalidOperationException($"The Lua script {file} is not embedded in {typeof(RedisScripts).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8);
        return reader.ReadToEnd().ReplaceLineEndings("\n");
    }

    private static string Script(params string[] files)
    {
        var text = Prelude + string.Concat(files.Select(Fragment));
        return text.EndsWith('\n') ? text[..^1] : text;
    }
}
