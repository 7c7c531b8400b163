// Tasks: filters (state, task, queue, created between, text in arguments or errors), cursor paging, live first page,
// and bulk retry or purge of dead (cancelled, expired) tasks by filter.
import { useState } from "preact/hooks";
import { api, TASK_STATES, type TaskPage } from "../api";
import { ago, shortId } from "../format";
import { useLiveData } from "../live";
import { href, navigate } from "../router";
import { act, confirm, Empty, ErrorNote, StateBadge } from "../ui";

const FILTERS = ["state", "task", "queue", "from", "to", "text"] as const;

// datetime-local gives local wall time without an offset; the API takes RFC 3339.
const toIso = (local: string) => local ? new Date(local).toISOString() : "";

export function TasksView({ query }: { query: URLSearchParams }) {
  const filters = Object.fromEntries(FILTERS.map(f => [f, query.get(f) ?? ""])) as Record<typeof FILTERS[number], string>;
  const cursor = query.get("cursor") ?? "";
  // The cursors of the pages before this one, to go back without the server's help.
  const back = query.getAll("back");
  const [form, setForm] = useState(filters);
  const key = JSON.stringify([filters, cursor]);

  const apiQuery = () => {
    const q = new URLSearchParams({ limit: query.get("limit") ?? "25" });
    if (filters.state) q.set("state", filters.state);
    if (filters.task) q.set("task", filters.task);
    if (filters.queue) q.set("queue", filters.queue);
    if (filters.from) q.set("createdAfter", toIso(filters.from));
    if (filters.to) q.set("createdBefore", toIso(filters.to));
    if (filters.text) q.set("text", filters.text);
    if (cursor) q.set("cursor", cursor);
    return q;
  };
  const page = useLiveData<TaskPage>(s => api.tasks(apiQuery(), s), [key],
    e => (!filters.queue || e.queue === filters.queue) && (!filters.task || e.task === filters.task));

  const go = (next: Record<string, string>, extra: [string, string][] = []) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v) q.set(k, v);
    for (const [k, v] of extra) q.append(k, v);
    if (query.get("limit")) q.set("limit", query.get("limit")!);
    navigate(href("tasks", q));
  };
  const apply = (e: Event) => { e.preventDefault(); go(form); };
  const clear = () => { const empty = Object.fromEntries(FILTERS.map(f => [f, ""])) as typeof form; setForm(empty); go({}); };

  const bulkState = ["cancelled", "expired"].includes(filters.state) ? filters.state : "dead";
  const bulkFilter = () => {
    const f: Record<string, unknown> = { state: bulkState };
    if (filters.task) f.task = filters.task;
    if (filters.queue) f.queue = filters.queue;
    if (!filters.task && !filters.queue) f.all = true;
    return f;
  };
  const scope = `every ${bulkState} task${filters.task ? ` of task ${filters.task}` : ""}${filters.queue ? ` in queue ${filters.queue}` : ""}${!filters.task && !filters.queue ? " in every queue" : ""}`;
  const retryAll = async () => {
    if (await confirm("Retry tasks?", <p>Queue {scope} again with fresh attempts. Time range and text filters do not apply.</p>, "Retry them", false))
      await act(() => api.retryMany(bulkFilter()), r => `${r.retried} task${r.retried === 1 ? "" : "s"} queued again`) && page.reload();
  };
  const purgeAll = async () => {
    if (await confirm("Purge tasks?", <p>Delete {scope} with its history. <strong>This cannot be undone.</strong> Time range and text filters do not apply.</p>, "Purge them"))
      await act(() => api.purge(bulkFilter()), r => `${r.purged} task${r.purged === 1 ? "" : "s"} deleted`) && page.reload();
  };

  return <section aria-labelledby="tasks-title">
    <h1 id="tasks-title">Tasks</h1>
    <form class="filters" onSubmit={apply} aria-label="Filter tasks">
      <label>State<select name="state" value={form.state} onChange={e => setForm({ ...form, state: e.currentTarget.value })}>
        <option value="">any</option>{TASK_STATES.map(s => <option value={s}>{s}</option>)}</select></label>
      <label>Task<input name="task" value={form.task} placeholder="flights.score" onInput={e => setForm({ ...form, task: e.currentTarget.value })} /></label>
      <label>Queue<input name="queue" value={form.queue} placeholder="default" onInput={e => setForm({ ...form, queue: e.currentTarget.value })} /></label>
      <label>Created from<input name="from" type="datetime-local" step="1" value={form.from} onInput={e => setForm({ ...form, from: e.currentTarget.value })} /></label>
      <label>to<input name="to" type="datetime-local" step="1" value={form.to} onInput={e => setForm({ ...form, to: e.currentTarget.value })} /></label>
      <label class="wide">Text in arguments or errors<input name="text" type="search" value={form.text} onInput={e => setForm({ ...form, text: e.currentTarget.value })} /></label>
      <div class="actions"><button type="submit" class="primary">Filter</button><button type="button" onClick={clear}>Clear</button></div>
    </form>
    <div class="bulk" aria-label="Bulk actions">
      <button type="button" onClick={retryAll}>Retry {bulkState} tasks…</button>
      <button type="button" class="danger" onClick={purgeAll}>Purge {bulkState} tasks…</button>
    </div>
    <ErrorNote error={page.error} />
    {page.data && (page.data.items.length === 0 ? <Empty>No tasks match{page.data.nextCursor ? " on this page (the search stopped early; go to the next page)" : ""}.</Empty> :
      <div class="scroll"><table class="tasks">
        <thead><tr><th scope="col">Id</th><th scope="col">Task</th><th scope="col">Queue</th><th scope="col">State</th><th scope="col" class="num">Attempts</th><th scope="col">Created</th><th scope="col">Error</th></tr></thead>
        <tbody>{page.data.items.map(t => <tr data-task-id={t.id} data-state={t.state}>
          <td><a href={href(`tasks/${t.id}`)}><code>{shortId(t.id)}</code></a></td>
          <td>{t.task}</td><td>{t.queue}</td><td><StateBadge state={t.state} /></td>
          <td class="num">{t.attempts}/{t.maxAttempts}</td><td title={t.createdAt}>{ago(t.createdAt)}</td>
          <td class="error-cell">{t.error ? `${t.error.type}: ${t.error.message}` : ""}</td>
        </tr>)}</tbody>
      </table></div>)}
    <nav class="pager" aria-label="Pages">
      {cursor && <button type="button" onClick={() => go(filters)}>First page</button>}
      {cursor && <button type="button" onClick={() => go({ ...filters, cursor: back[back.length - 1] ?? "" }, back.slice(0, -1).map(b => ["back", b]))}>Previous</button>}
      {page.data?.nextCursor && <button type="button" class="primary" onClick={() => go({ ...filters, cursor: page.data!.nextCursor! }, [...back, ...(cursor ? [cursor] : [])].map(b => ["back", b]))}>Next page</button>}
    </nav>
  </section>;
}
