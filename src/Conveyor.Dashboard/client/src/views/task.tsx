// A task's page: state, arguments, result, the last error with its stack trace, every attempt on a timeline, its worker,
// headers (trace context, parent and root ids), its workflow and step, and the actions that apply: cancel a waiting or
// running task, retry a dead, cancelled or expired one.
import type { ComponentChildren } from "preact";
import { api, type Task } from "../api";
import { ago, duration, json, time } from "../format";
import { useLiveData } from "../live";
import { href } from "../router";
import { act, confirm, ErrorNote, StateBadge } from "../ui";

const WAITING = ["pending", "scheduled", "queued", "running", "retrying"];
const RETRYABLE = ["dead", "cancelled", "expired"];

export function TaskView({ id }: { id: string }) {
  const task = useLiveData(s => api.task(id, s), [id], e => e.taskId === id, 250);
  const t = task.data;
  const notFound = task.error?.startsWith("404");

  const cancel = async () => {
    if (await confirm("Cancel this task?", <p>Task <code>{id}</code> will not run{t?.state === "running" ? " further: its worker stops it at its next heartbeat" : ""}. It can be retried later.</p>, "Cancel task"))
      await act(() => api.cancel(id), r => `Task ${r.state === "cancelled" ? "cancelled" : "asked to stop"}`) && task.reload();
  };
  const retry = async () => {
    await act(() => api.retry(id), () => "Task queued again with fresh attempts") && task.reload();
  };

  return <section aria-labelledby="task-title">
    <p class="crumbs"><a href={href("tasks")}>Tasks</a> /</p>
    <h1 id="task-title">{t ? t.task : "Task"} <code class="id">{id}</code></h1>
    {notFound ? <p class="note error" role="alert">No task with this id: it may have been purged or removed by retention.</p> : <ErrorNote error={task.error} />}
    {t && <>
      <div class="task-head">
        <StateBadge state={t.state} />
        {t.cancelRequested && <span class="badge warn">cancel requested</span>}
        <div class="actions">
          {WAITING.includes(t.state) && <button type="button" class="danger" onClick={cancel}>Cancel…</button>}
          {RETRYABLE.includes(t.state) && <button type="button" class="primary" onClick={retry}>Retry</button>}
        </div>
      </div>
      <dl class="facts">
        <dt>Queue</dt><dd><a href={href("tasks", { queue: t.queue })}>{t.queue}</a></dd>
        <dt>Priority</dt><dd>{t.priority}</dd>
        <dt>Attempts</dt><dd>{t.attempts} of {t.maxAttempts}</dd>
        <dt>Worker</dt><dd>{t.workerId ? <a href={href("workers")}><code>{t.workerId}</code></a> : "—"}</dd>
        <dt>Created</dt><dd>{time(t.createdAt)} <span class="muted">({ago(t.createdAt)})</span></dd>
        {t.notBefore && <><dt>Not before</dt><dd>{time(t.notBefore)}</dd></>}
        <dt>Started</dt><dd>{time(t.startedAt)}</dd>
        <dt>Finished</dt><dd>{time(t.finishedAt)}{t.startedAt && t.finishedAt && <span class="muted"> (ran {duration(new Date(t.finishedAt).getTime() - new Date(t.startedAt).getTime())})</span>}</dd>
        {t.expiresAt && <><dt>Expires</dt><dd>{time(t.expiresAt)}</dd></>}
        {t.idempotencyKey && <><dt>Idempotency key</dt><dd><code>{t.idempotencyKey}</code></dd></>}
        {Step(t.headers)}
        {Related(t.headers)}
      </dl>
      {t.error && <div class="error-box" data-section="error">
        <h2>Error</h2>
        <p class="error-line"><strong>{t.error.type}</strong>: {t.error.message}</p>
        {t.error.detail && <details open><summary>Stack trace</summary><pre class="stack">{t.error.detail}</pre></details>}
      </div>}
      <div class="two">
        <div><h2>Arguments</h2><pre class="json" data-section="args">{json(t.args)}</pre></div>
        <div><h2>Result</h2><pre class="json" data-section="result">{json(t.result)}</pre></div>
      </div>
      <h2>Timeline</h2>
      <ol class="timeline" data-section="timeline">
        {Timeline(t).map(item => <li class={`tl ${item.kind}`}>
          <time dateTime={item.at}>{time(item.at)}</time> {item.body}
        </li>)}
      </ol>
      {t.headers && Object.keys(t.headers).length > 0 && <>
        <h2>Headers</h2>
        <dl class="facts">{Object.entries(t.headers).map(([k, v]) => <><dt><code>{k}</code></dt><dd><code>{v}</code></dd></>)}</dl>
      </>}
    </>}
  </section>;
}

// A workflow step's headers: its workflow and step, and the steps it runs after as "stepId=taskId,…".
function Step(headers?: Record<string, string> | null) {
  const workflow = headers?.["conveyor-workflow"];
  if (!workflow) return null;
  const after = (headers["conveyor-after"] ?? "").split(",").filter(Boolean).map(pair => pair.split("=", 2));
  return <>
    <dt>Workflow</dt>
    <dd data-field="workflow"><a href={href(`workflows/${workflow}`)}><code>{workflow}</code></a>
      {headers["conveyor-step"] && <>, step <code>{headers["conveyor-step"]}</code></>}
      {headers["conveyor-error-step"] && <span class="badge bad">error step</span>}</dd>
    {after.length > 0 && <><dt>Runs after</dt><dd>{after.slice(0, 20).map(([step, task], i) => <>{i > 0 && ", "}
      {task ? <a href={href(`tasks/${task}`)}><code>{step}</code></a> : <code>{step}</code>}</>)}
      {after.length > 20 && <span class="muted"> and {after.length - 20} more</span>}</dd></>}
  </>;
}

// Parent and root ids travel in headers; linked when they are task ids.
function Related(headers?: Record<string, string> | null) {
  if (!headers) return null;
  const links = Object.entries(headers).filter(([k]) => /(^|-)(parent|root)(-id)?$/i.test(k));
  return links.map(([k, v]) => <><dt>{k}</dt><dd>{/^[0-9a-f-]{36}$/i.test(v) ? <a href={href(`tasks/${v}`)}><code>{v}</code></a> : <code>{v}</code>}</dd></>);
}

function Timeline(t: Task) {
  const items: { at: string; kind: string; body: ComponentChildren }[] = [];
  for (const tr of t.transitions) items.push({ at: tr.at, kind: tr.state, body: <StateBadge state={tr.state} /> });
  for (const e of t.errors) items.push({ at: e.at, kind: "error", body: <span>attempt {e.attempt} failed: <strong>{e.error.type}</strong>: {e.error.message}</span> });
  return items.sort((a, b) => a.at.localeCompare(b.at) || (a.kind === "error" ? -1 : 1));
}
