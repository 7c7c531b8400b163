// Limits: the rate and concurrency limits of the serving process, and their use now across every worker.
import { api } from "../api";
import { time } from "../format";
import { useLiveData } from "../live";
import { Empty, ErrorNote } from "../ui";

export function LimitsView() {
  const limits = useLiveData(s => api.limits(s), [], e => e.type !== "enqueued", 1000);
  return <section aria-labelledby="limits-title">
    <h1 id="limits-title">Limits</h1>
    <ErrorNote error={limits.error} />
    {limits.data && (limits.data.length === 0 ? <Empty>No rate or concurrency limits are configured in this process.</Empty> :
      <div class="scroll"><table class="limits">
        <thead><tr><th scope="col">Scope</th><th scope="col">Rate</th><th scope="col">Concurrency</th><th scope="col" class="num">Running</th><th scope="col">Booked until</th></tr></thead>
        <tbody>{limits.data.map(l => <tr>
          <th scope="row">{l.task ? `task ${l.task}` : `queue ${l.queue}`}</th>
          <td>{l.rate ?? "—"}</td>
          <td>{l.concurrency ?? "—"}{l.concurrencyKey && <span class="muted"> per {l.concurrencyKey}</span>}</td>
          <td class="num">{l.concurrency ? l.running : "—"}{l.runningByKey && Object.keys(l.runningByKey).length > 0 &&
            <div class="muted">{Object.entries(l.runningByKey).map(([k, n]) => `${k || "(none)"}: ${n}`).join(", ")}</div>}</td>
          <td>{l.reservedUntil ? time(l.reservedUntil) : "—"}</td>
        </tr>)}</tbody>
      </table></div>)}
  </section>;
}
