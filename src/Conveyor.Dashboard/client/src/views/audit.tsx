// Audit: sign-ins and admin actions, newest first, filtered by action prefix, actor and time, with cursor paging.
// Admin sessions only (the API answers 403 to others; the navigation hides the view). No event announces an entry:
// the first page is read again every 5 s.
import { useState } from "preact/hooks";
import { api, type AuditPage } from "../api";
import { ago, json, shortId } from "../format";
import { useInterval, useLiveData } from "../live";
import { href, navigate } from "../router";
import { Empty, ErrorNote } from "../ui";

const FILTERS = ["action", "actor", "since", "until"] as const;
type Filters = Record<typeof FILTERS[number], string>;

/** A datetime-local value (the browser's time zone) as ISO 8601 for the API; "" stays "". */
function iso(local: string): string {
  if (!local) return "";
  const d = new Date(local);
  return isNaN(d.getTime()) ? local : d.toISOString();
}

export function AuditView({ query }: { query: URLSearchParams }) {
  const filters = Object.fromEntries(FILTERS.map(f => [f, query.get(f) ?? ""])) as Filters;
  const cursor = query.get("cursor") ?? "";
  const back = query.getAll("back");
  const [form, setForm] = useState(filters);
  const key = JSON.stringify([filters, cursor, query.get("limit")]);

  const apiQuery = () => {
    const q = new URLSearchParams({ limit: query.get("limit") ?? "50" });
    if (filters.action) q.set("action", filters.action);
    if (filters.actor) q.set("actor", filters.actor);
    if (filters.since) q.set("since", iso(filters.since));
    if (filters.until) q.set("until", iso(filters.until));
    if (cursor) q.set("cursor", cursor);
    return q;
  };
  const page = useLiveData<AuditPage>(s => api.audit(apiQuery(), s), [key], () => false);
  useInterval(() => { if (!cursor) page.poke(); }, 5000);

  const go = (next: Record<string, string>, extra: [string, string][] = []) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v) q.set(k, v);
    for (const [k, v] of extra) q.append(k, v);
    if (query.get("limit")) q.set("limit", query.get("limit")!);
    navigate(href("audit", q));
  };
  const apply = (e: Event) => { e.preventDefault(); go(form); };
  const clear = () => { setForm({ action: "", actor: "", since: "", until: "" }); go({}); };
  const filtered = FILTERS.some(f => filters[f]);

  return <section aria-labelledby="audit-title">
    <h1 id="audit-title">Audit</h1>
    <form class="filters" onSubmit={apply} aria-label="Filter the audit log">
      <label>Action<input name="action" value={form.action} placeholder="task." onInput={e => setForm({ ...form, action: e.currentTarget.value })} /></label>
      <label>Actor<input name="actor" value={form.actor} placeholder="key id, cli, loopback" onInput={e => setForm({ ...form, actor: e.currentTarget.value })} /></label>
      <label>Since<input name="since" type="datetime-local" step="1" value={form.since} onInput={e => setForm({ ...form, since: e.currentTarget.value })} /></label>
      <label>Until<input name="until" type="datetime-local" step="1" value={form.until} onInput={e => setForm({ ...form, until: e.currentTarget.value })} /></label>
      <div class="actions"><button type="submit" class="primary">Filter</button><button type="button" onClick={clear}>Clear</button></div>
    </form>
    <ErrorNote error={page.error} />
    {page.data && (page.data.entries.length === 0 ? <Empty>No audit entries{filtered ? " match" : " yet: sign-ins and admin actions appear here"}.</Empty> :
      <div class="scroll"><table class="audit">
        <thead><tr><th scope="col">When</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th><th scope="col">From</th><th scope="col">Details</th></tr></thead>
        <tbody>{page.data.entries.map(e => <tr key={e.id} data-audit-action={e.action} data-outcome={e.outcome}>
          <td title={e.at}>{ago(e.at)}</td>
          <td><code>{e.actor}</code><div class="muted">{e.actorKind}</div></td>
          <td><code>{e.action}</code></td>
          <td>{e.target ? <code title={e.target}>{shortId(e.target)}</code> : <span class="muted">—</span>}</td>
          <td><span class={`badge ${e.outcome === "ok" ? "ok" : "state-dead"}`}>{e.outcome}</span>{e.status ? <div class="muted">{e.status}</div> : null}</td>
          <td>{e.remoteAddress ?? <span class="muted">—</span>}{e.userAgent && <div class="muted" title={e.userAgent}>{e.userAgent.slice(0, 40)}</div>}</td>
          <td>{e.details ? <code>{json(e.details).replace(/\s+/g, " ")}</code> : <span class="muted">—</span>}</td>
        </tr>)}</tbody>
      </table></div>)}
    <nav class="pager" aria-label="Pages">
      {cursor && <button type="button" onClick={() => go(filters)}>First page</button>}
      {cursor && <button type="button" onClick={() => go({ ...filters, cursor: back[back.length - 1] ?? "" }, back.slice(0, -1).map(b => ["back", b]))}>Previous</button>}
      {page.data?.nextCursor && <button type="button" class="primary" onClick={() => go({ ...filters, cursor: page.data!.nextCursor! }, [...back, ...(cursor ? [cursor] : [])].map(b => ["back", b]))}>Next page</button>}
    </nav>
  </section>;
}
