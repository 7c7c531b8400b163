// Overview: throughput, failures and queue wait over time; depth per queue and state; workers alive; recent failures.
import { useEffect } from "preact/hooks";
import { api, QUEUES_MAX_AGE_MS, TASK_STATES, type StatsBucket } from "../api";
import { ago, atLeast, count, duration, LOWER_BOUND_TITLE, shortId } from "../format";
import { useLiveData } from "../live";
import { href } from "../router";
import { Chart, Empty, ErrorNote, StateBadge } from "../ui";

export const READY_MARK = "conveyor:overview-ready";

export function Overview() {
  const stats = useLiveData(s => api.stats(s), []);
  const queues = useLiveData(s => api.queues(s), [], undefined, undefined, QUEUES_MAX_AGE_MS);
  const workers = useLiveData(s => api.workers(s), [], e => e.type === "started" || e.type === "succeeded", 5000);
  const failures = useLiveData(s => api.tasks(new URLSearchParams({ state: "dead", limit: "10" }), s), [],
    e => e.type === "dead" || e.type === "enqueued");

  // The first paint with data, for the browser test's measure of the overview's first paint (performance.getEntriesByName).
  const ready = stats.data !== undefined && queues.data !== undefined && workers.data !== undefined;
  useEffect(() => {
    if (ready && performance.getEntriesByName(READY_MARK).length === 0) requestAnimationFrame(() => performance.mark(READY_MARK));
  }, [ready]);

  const buckets = stats.data?.buckets ?? [];
  const times = buckets.map(b => b.at);
  const perSecond = (n: number) => n / (stats.data?.bucketSeconds ?? 1);
  const rate = (n: number) => `${n < 10 ? n.toFixed(1) : Math.round(n)}/s`;
  const minutes = Math.round((stats.data?.windowSeconds ?? 900) / 60);
  const total = (pick: (b: StatsBucket) => number) => `${count(buckets.reduce((sum, b) => sum + pick(b), 0))} in ${minutes} min`;
  const timed = buckets.filter(b => b.waitCount > 0);
  const waitCount = timed.reduce((sum, b) => sum + b.waitCount, 0);
  const waitAverage = waitCount ? timed.reduce((sum, b) => sum + (b.waitMsAvg ?? 0) * b.waitCount, 0) / waitCount : null;
  const waitMax = timed.length ? Math.max(...timed.map(b => b.waitMsMax ?? 0)) : null;
  const alive = workers.data?.filter(w => w.alive !== false) ?? [];
  const totals = TASK_STATES.map(state => [state, (queues.data ?? []).reduce((sum, q) => sum + (q[state] as number), 0)] as const);

  return <section class="overview" aria-labelledby="overview-title">
    <h1 id="overview-title">Overview</h1>
    <div class="cards">
      <a class="card" href={href("workers")} data-card="workers"><span class="label">Workers alive</span><span class="value">{workers.data ? alive.length : "…"}</span></a>
      {totals.filter(([s]) => ["queued", "running", "scheduled", "dead"].includes(s)).map(([state, n]) =>
        <a class="card" href={href("tasks", { state })} data-card={state}><span class="label">{state}</span><span class="value">{queues.data ? count(n) : "…"}</span></a>)}
    </div>
    <ErrorNote error={stats.error} />
    <div class="charts">
      <Chart title="Throughput" unit="tasks per second" times={times} format={rate}
        series={[{ name: "succeeded", className: "ok", values: buckets.map(b => perSecond(b.succeeded)), summary: total(b => b.succeeded) },
        { name: "enqueued", className: "info", values: buckets.map(b => perSecond(b.enqueued)), summary: total(b => b.enqueued) }]} />
      <Chart title="Failures" unit="failed attempts per second" times={times} format={rate}
        series={[{ name: "failed", className: "warn", values: buckets.map(b => perSecond(b.failed)), summary: total(b => b.failed) },
        { name: "dead", className: "bad", values: buckets.map(b => perSecond(b.dead)), summary: total(b => b.dead) }]} />
      <Chart title="Queue wait" unit="milliseconds" times={times} format={n => duration(n)}
        series={[{ name: "average", className: "info", values: buckets.map(b => b.waitMsAvg), summary: duration(waitAverage) },
        { name: "max", className: "warn", values: buckets.map(b => b.waitMsMax), summary: duration(waitMax) }]} />
    </div>

    <h2>Depth per queue</h2>
    <ErrorNote error={queues.error} />
    {queues.data && (queues.data.length === 0 ? <Empty>No queue has tasks yet.</Empty> :
      <div class="scroll"><table class="depth">
        <thead><tr><th scope="col">Queue</th>{TASK_STATES.map(s => <th scope="col" class="num">{s}</th>)}</tr></thead>
        <tbody>{queues.data.map(q => <tr data-queue={q.name}>
          <th scope="row"><a href={href("tasks", { queue: q.name })}>{q.name}</a>{q.paused && <span class="badge paused">paused</span>}</th>
          {TASK_STATES.map(s => {
            const n = q[s] as number, lowerBound = q.lowerBounds.includes(s);
            return <td class="num" data-state={s} title={lowerBound ? LOWER_BOUND_TITLE : undefined}>
              {n || lowerBound ? <a href={href("tasks", { queue: q.name, state: s })}>{atLeast(n, lowerBound)}</a> : "0"}</td>;
          })}
        </tr>)}</tbody>
      </table></div>)}

    <h2>Recent failures</h2>
    <ErrorNote error={failures.error} />
    {failures.data && (failures.data.items.length === 0 ? <Empty>No dead tasks.</Empty> :
      <ul class="failures">{failures.data.items.map(t => <li data-task-id={t.id}>
        <a href={href(`tasks/${t.id}`)}><code>{shortId(t.id)}</code> {t.task}</a> <StateBadge state={t.state} />
        <span class="muted"> {t.queue} · {ago(t.finishedAt)}</span>
        {t.error && <div class="error-line">{t.error.type}: {t.error.message}</div>}
      </li>)}</ul>)}
  </section>;
}
