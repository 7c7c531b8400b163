// Workflows: newest first, filtered by state and name, with cursor paging; each row's steps counted by state. Live: the
// list is read again on any workflow's event or its steps', and every 10 s for the end no event announces (a workflow
// ended by a lease that ran out for the last time).
import { useState } from "preact/hooks";
import { api, WORKFLOW_STATES, type Workflow, type WorkflowPage } from "../api";
import { ago, count, shortId } from "../format";
import { useInterval, useLiveData } from "../live";
import { href, navigate } from "../router";
import { countByState, progressOf } from "../workflow-graph";
import { Empty, ErrorNote, StateBadge } from "../ui";

const FILTERS = ["state", "name"] as const;

export function WorkflowsView({ query }: { query: URLSearchParams }) {
  const filters = Object.fromEntries(FILTERS.map(f => [f, query.get(f) ?? ""])) as Record<typeof FILTERS[number], string>;
  const cursor = query.get("cursor") ?? "";
  // The cursors of the pages before this one, to go back without the server's help.
  const back = query.getAll("back");
  const [form, setForm] = useState(filters);
  const key = JSON.stringify([filters, cursor, query.get("limit")]);

  const apiQuery = () => {
    const q = new URLSearchParams({ limit: query.get("limit") ?? "25" });
    if (filters.state) q.set("state", filters.state);
    if (filters.name) q.set("name", filters.name);
    if (cursor) q.set("cursor", cursor);
    return q;
  };
  const page = useLiveData<WorkflowPage>(s => api.workflows(apiQuery(), s), [key], e => e.workflowId !== undefined);
  useInterval(page.poke, 10000);

  const go = (next: Record<string, string>, extra: [string, string][] = []) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v) q.set(k, v);
    for (const [k, v] of extra) q.append(k, v);
    if (query.get("limit")) q.set("limit", query.get("limit")!);
    navigate(href("workflows", q));
  };
  const apply = (e: Event) => { e.preventDefault(); go(form); };
  const clear = () => { setForm({ state: "", name: "" }); go({}); };

  return <section aria-labelledby="workflows-title">
    <h1 id="workflows-title">Workflows</h1>
    <form class="filters" onSubmit={apply} aria-label="Filter workflows">
      <label>State<select name="state" value={form.state} onChange={e => setForm({ ...form, state: e.currentTarget.value })}>
        <option value="">any</option>{WORKFLOW_STATES.map(s => <option value={s}>{s}</option>)}</select></label>
      <label>Name<input name="name" value={form.name} placeholder="harvest" onInput={e => setForm({ ...form, name: e.currentTarget.value })} /></label>
      <div class="actions"><button type="submit" class="primary">Filter</button><button type="button" onClick={clear}>Clear</button></div>
    </form>
    <ErrorNote error={page.error} />
    {page.data && (page.data.items.length === 0 ? <Empty>No workflows{filters.state || filters.name ? " match" : ". Start one with IWorkflowClient.StartAsync or POST /api/v1/workflows"}.</Empty> :
      <div class="scroll"><table class="workflows">
        <thead><tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">State</th><th scope="col">Steps</th><th scope="col">Created</th><th scope="col">Ended</th></tr></thead>
        <tbody>{page.data.items.map(w => <tr key={w.id} data-workflow-id={w.id} data-state={w.state}>
          <td><a href={href(`workflows/${w.id}`)}><code>{shortId(w.id)}</code></a></td>
          <td>{w.name ?? <span class="muted">—</span>}</td>
          <td><StateBadge state={w.state} /></td>
          <td><StepCounts workflow={w} /></td>
          <td title={w.createdAt}>{ago(w.createdAt)}</td>
          <td title={w.finishedAt ?? undefined}>{ago(w.finishedAt)}</td>
        </tr>)}</tbody>
      </table></div>)}
    <nav class="pager" aria-label="Pages">
      {cursor && <button type="button" onClick={() => go(filters)}>First page</button>}
      {cursor && <button type="button" onClick={() => go({ ...filters, cursor: back[back.length - 1] ?? "" }, back.slice(0, -1).map(b => ["back", b]))}>Previous</button>}
      {page.data?.nextCursor && <button type="button" class="primary" onClick={() => go({ ...filters, cursor: page.data!.nextCursor! }, [...back, ...(cursor ? [cursor] : [])].map(b => ["back", b]))}>Next page</button>}
    </nav>
  </section>;
}

// Steps whose workflow is read again at most every 10 s in the list (its page follows it closely): a big chord's
// record is megabytes.
const BIG_WORKFLOW = 1000;

/**
 * A row's steps by state. The list gives each workflow's graph but not its steps' states, so each row reads its
 * workflow, again when one of its steps has an event (at most once a second, every 10 s for a big one) and when its
 * state changes; only the counts are kept.
 */
function StepCounts({ workflow }: { workflow: Workflow }) {
  const big = workflow.steps.length > BIG_WORKFLOW;
  const detail = useLiveData(async s => {
    const w = await api.workflow(workflow.id, s);
    return { progress: progressOf(w.steps), counts: countByState(w.steps.filter(x => !x.onError)) };
  }, [workflow.id, workflow.state, workflow.finishedAt], e => e.workflowId === workflow.id, big ? 10000 : 1000);
  const total = workflow.steps.filter(s => !s.onError).length;
  if (!detail.data) return <span class="muted" data-field="progress">{count(total)} step{total === 1 ? "" : "s"}</span>;
  const { progress, counts } = detail.data;
  return <div class="step-counts">
    <ProgressBar counts={counts} total={progress.total} />
    <span data-field="progress">{count(progress.done)}/{count(progress.total)} succeeded</span>
    <span class="muted" data-field="counts">{counts.filter(([s]) => s !== "succeeded").map(([s, n]) => `${count(n)} ${s}`).join(" · ")}</span>
  </div>;
}

/** Steps by state as one bar of coloured segments; decoration beside the counts in text, hidden from screen readers. */
export function ProgressBar({ counts, total }: { counts: [string, number][]; total: number }) {
  return <span class="progress" aria-hidden="true">
    {counts.map(([state, n]) => <span class={`seg seg-${state}`} style={{ width: `${(100 * n) / Math.max(1, total)}%` }} />)}
  </span>;
}
