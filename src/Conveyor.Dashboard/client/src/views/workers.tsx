// Workers: each process with its running tasks, counters, memory and last heartbeat.
import { useEffect } from "preact/hooks";
import { api } from "../api";
import { ago, bytes, count, shortId } from "../format";
import { useLiveData } from "../live";
import { href } from "../router";
import { Empty, ErrorNote } from "../ui";

export function WorkersView() {
  // Heartbeats are not events: started and finished attempts re-read the list, and so does a 3 s timer (below).
  const workers = useLiveData(s => api.workers(s), [], e => e.type !== "enqueued", 1000);
  return <section aria-labelledby="workers-title">
    <h1 id="workers-title">Workers</h1>
    <ErrorNote error={workers.error} />
    <Ticker onTick={workers.reload} />
    {workers.data && (workers.data.length === 0 ? <Empty>No worker has sent a heartbeat in the last hour.</Empty> :
      <div class="worker-list">{workers.data.map(w => <article class={`worker ${w.alive === false ? "dead" : "alive"}`} data-worker-id={w.id} aria-label={`Worker ${w.id}`}>
        <h2><code>{w.id}</code> <span class={`badge ${w.alive === false ? "bad" : "ok"}`}>{w.alive === false ? "gone" : "alive"}</span></h2>
        <dl class="facts">
          <dt>Host, pid</dt><dd>{w.host}, {w.processId}</dd>
          <dt>Queues</dt><dd>{w.queues.join(", ") || "—"}</dd>
          <dt>Running</dt><dd data-field="running">{w.running} of {w.concurrency}</dd>
          <dt>Processed</dt><dd>{count(w.processed)} <span class="muted">({count(w.failed)} failed)</span></dd>
          <dt>Memory</dt><dd>{bytes(w.memoryBytes)}</dd>
          <dt>Last heartbeat</dt><dd title={w.heartbeatAt}>{ago(w.heartbeatAt)}</dd>
          <dt>Started</dt><dd title={w.startedAt}>{ago(w.startedAt)}</dd>
          {w.version && <><dt>Version</dt><dd>{w.version}</dd></>}
        </dl>
        {w.runningTasks.length > 0 && <ul class="running">{w.runningTasks.map(t =>
          <li><a href={href(`tasks/${t.id}`)}><code>{shortId(t.id)}</code> {t.task}</a> <span class="muted">attempt {t.attempt}, {ago(t.startedAt)}</span></li>)}</ul>}
      </article>)}</div>)}
  </section>;
}

// Re-reads on a timer too: heartbeats and memory change without task events.
function Ticker({ onTick }: { onTick: () => void }) {
  useEffect(() => { const t = window.setInterval(onTick, 3000); return () => window.clearInterval(t); }, []);
  return null;
}
