// Queues: depth per state, rate and wait over the stats window, pause and resume.
import { api, QUEUES_MAX_AGE_MS } from "../api";
import { atLeast, count, duration, LOWER_BOUND_TITLE } from "../format";
import { useLiveData } from "../live";
import { href } from "../router";
import { act, Empty, ErrorNote } from "../ui";

export function QueuesView() {
  const queues = useLiveData(s => api.queues(s), [], undefined, undefined, QUEUES_MAX_AGE_MS);
  const stats = useLiveData(s => api.stats(s), [], () => true, 2000);
  const window = stats.data ? stats.data.windowSeconds : 0;
  const rateOf = (name: string) => stats.data?.queues.find(q => q.queue === name);
  const toggle = async (name: string, paused: boolean) => {
    await act(() => paused ? api.resumeQueue(name) : api.pauseQueue(name), q => `Queue ${q.name} ${q.paused ? "paused" : "resumed"}`) && queues.reload();
  };
  return <section aria-labelledby="queues-title">
    <h1 id="queues-title">Queues</h1>
    <ErrorNote error={queues.error} />
    {queues.data && (queues.data.length === 0 ? <Empty>No queue has tasks yet.</Empty> :
      <div class="scroll"><table class="queues">
        <thead><tr><th scope="col">Queue</th><th scope="col" class="num">Queued</th><th scope="col" class="num">Scheduled</th><th scope="col" class="num">Running</th>
          <th scope="col" class="num">Retrying</th><th scope="col" class="num">Dead</th><th scope="col" class="num">Succeeded</th>
          <th scope="col" class="num" title={`over the last ${duration(window * 1000)}`}>Done/min</th><th scope="col" class="num">Avg wait</th><th scope="col">State</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
        <tbody>{queues.data.map(q => {
          const r = rateOf(q.name);
          return <tr data-queue={q.name}>
            <th scope="row"><a href={href("tasks", { queue: q.name })}>{q.name}</a></th>
            <td class="num" data-state="queued">{count(q.queued)}</td><td class="num">{count(q.scheduled)}</td><td class="num">{count(q.running)}</td>
            <td class="num">{count(q.retrying)}</td><td class="num" data-state="dead">{count(q.dead)}</td><td class="num" data-state="succeeded" title={q.lowerBounds.includes("succeeded") ? LOWER_BOUND_TITLE : undefined}>{atLeast(q.succeeded, q.lowerBounds.includes("succeeded"))}</td>
            <td class="num">{r && window ? (r.succeeded * 60 / window).toFixed(1) : "—"}</td><td class="num">{duration(r?.waitMsAvg)}</td>
            <td>{q.paused ? <span class="badge paused">paused</span> : <span class="badge ok">active</span>}</td>
            <td><button type="button" onClick={() => toggle(q.name, q.paused)} aria-label={`${q.paused ? "Resume" : "Pause"} queue ${q.name}`}>{q.paused ? "Resume" : "Pause"}</button></td>
          </tr>;
        })}</tbody>
      </table></div>)}
  </section>;
}
