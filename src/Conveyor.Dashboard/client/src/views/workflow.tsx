// A workflow's page: its state, its steps as a graph in layers (or as a list), the error step, and cancel or retry.
// Live: a stream of its own on GET /api/v1/events?workflow=ID re-reads the workflow on each of its events and its
// steps'; a 10 s timer while it runs catches what no event announces (an end by a lease that ran out for the last time).
import { useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, TASK_STATES, type Workflow, type WorkflowStep } from "../api";
import { ago, count, duration, time } from "../format";
import { useFilteredEvents, useInterval, useLiveData } from "../live";
import { href, navigate } from "../router";
import { act, confirm, ErrorNote, StateBadge } from "../ui";
import { countByState, layersOf, progressOf } from "../workflow-graph";
import { ProgressBar } from "./workflows";

// Steps shown at first in each layer of the graph, and how many more each "show more" adds: a chord of 10,000 members
// stays a page of cards, and the list view (with its state filter) reaches any step.
const LAYER_FIRST = 12;
const LAYER_MORE = 200;
const LIST_PAGE = 100;

export function WorkflowView({ id, query }: { id: string; query: URLSearchParams }) {
  const workflow = useLiveData(s => api.workflow(id, s), [id], () => false, 500);
  const w = workflow.data;
  useFilteredEvents(`workflow=${encodeURIComponent(id)}`, () => workflow.poke());
  useInterval(() => { if (w?.state === "running") workflow.poke(); }, 10000);
  const notFound = workflow.error?.startsWith("404");
  const listView = query.get("view") === "list";

  const setView = (list: boolean) => {
    const q = new URLSearchParams(query);
    if (list) q.set("view", "list"); else q.delete("view");
    navigate(href(`workflows/${id}`, q), true);
  };
  const cancel = async () => {
    if (await confirm("Cancel this workflow?", <p>Workflow <code>{id}</code>{w?.name ? <> ({w.name})</> : null}: its steps that have not started never start, and running ones are asked to stop at their worker's next heartbeat. It can be retried later from its cancelled steps.</p>, "Cancel workflow"))
      await act(() => api.cancelWorkflow(id), r => `Workflow ${r.state}`) && workflow.reload();
  };
  const retry = async () => {
    if (await confirm("Retry this workflow?", <p>Workflow <code>{id}</code>{w?.name ? <> ({w.name})</> : null} runs again from its failed and cancelled steps with fresh attempts; succeeded steps keep their results and do not run again.</p>, "Retry workflow", false))
      await act(() => api.retryWorkflow(id), r => `Workflow ${r.state} again`) && workflow.reload();
  };

  return <section aria-labelledby="workflow-title">
    <p class="crumbs"><a href={href("workflows")}>Workflows</a> /</p>
    <h1 id="workflow-title">{w?.name ?? "Workflow"} <code class="id">{id}</code></h1>
    {notFound ? <p class="note error" role="alert">No workflow with this id.</p> : <ErrorNote error={workflow.error} />}
    {w && <>
      <div class="task-head" data-section="workflow-head">
        <StateBadge state={w.state} />
        <div class="actions">
          {w.state === "running" && <button type="button" class="danger" onClick={cancel}>Cancel workflow…</button>}
          {(w.state === "failed" || w.state === "cancelled") && <button type="button" class="primary" onClick={retry}>Retry workflow…</button>}
        </div>
      </div>
      <Summary workflow={w} />
      <ErrorStep workflow={w} />
      <div class="steps-head">
        <h2>Steps</h2>
        <div class="toggle" role="group" aria-label="Show the steps as">
          <button type="button" aria-pressed={!listView} onClick={() => setView(false)}>Graph</button>
          <button type="button" aria-pressed={listView} onClick={() => setView(true)}>List</button>
        </div>
      </div>
      {listView ? <StepList workflow={w} /> : <StepGraph workflow={w} />}
    </>}
  </section>;
}

function Summary({ workflow: w }: { workflow: Workflow }) {
  const graph = w.steps.filter(s => !s.onError);
  const progress = progressOf(w.steps);
  const counts = countByState(graph);
  return <dl class="facts" data-section="summary">
    <dt>Created</dt><dd>{time(w.createdAt)} <span class="muted">({ago(w.createdAt)})</span></dd>
    <dt>Ended</dt><dd>{time(w.finishedAt)}{w.finishedAt && <span class="muted"> (took {duration(new Date(w.finishedAt).getTime() - new Date(w.createdAt).getTime())})</span>}</dd>
    <dt>Steps</dt><dd>
      <div class="step-counts">
        <ProgressBar counts={counts} total={progress.total} />
        <span data-field="progress">{count(progress.done)}/{count(progress.total)} succeeded</span>
        <span class="muted" data-field="counts">{counts.map(([s, n]) => `${count(n)} ${s}`).join(" · ")}</span>
      </div>
    </dd>
  </dl>;
}

function ErrorStep({ workflow: w }: { workflow: Workflow }) {
  const step = w.steps.find(s => s.onError);
  if (!step) return null;
  return <div class="error-step" data-section="error-step">
    <h2>Error step</h2>
    <p class="muted">Runs once when a step fails; cancelled unrun when none does.</p>
    <ol class="step-cards"><StepCard step={step} /></ol>
  </div>;
}

function StepCard({ step: s }: { step: WorkflowStep }) {
  const ran = s.startedAt && s.finishedAt ? new Date(s.finishedAt).getTime() - new Date(s.startedAt).getTime() : null;
  return <li class={`step step-${s.state ?? "removed"}`} data-step-id={s.id} data-state={s.state ?? "removed"}>
    <div class="step-title">
      <a href={href(`tasks/${s.taskId}`)} title="The step's task"><code>{s.id}</code></a>
      <StateBadge state={s.state ?? "removed"} />
    </div>
    <div class="step-task">{s.task ?? <span class="muted">task removed by retention</span>}</div>
    <div class="muted">
      {s.attempts} attempt{s.attempts === 1 ? "" : "s"}
      {s.finishedAt ? <> · ended <span title={s.finishedAt}>{ago(s.finishedAt)}</span>{ran !== null && <> · ran {duration(ran)}</>}</>
        : s.startedAt ? <> · started <span title={s.startedAt}>{ago(s.startedAt)}</span></> : null}
    </div>
    {s.error && <div class="error-line step-error" title={s.error.message}>{s.error.type}: {s.error.message}</div>}
  </li>;
}

/**
 * The steps in layers (columns by depth), with the edges drawn between the cards in an SVG behind them. Each layer
 * shows its first steps and a "+k more" that shows more; an edge from a step not shown comes from its layer's "more".
 */
function StepGraph({ workflow: w }: { workflow: Workflow }) {
  // The graph of a workflow never changes: its layers are computed once, as ids, and filled with each read's steps.
  const layerIds = useMemo(() => layersOf(w.steps).map(layer => layer.map(s => s.id)), [w.id, w.steps.length]);
  const byId = new Map(w.steps.map(s => [s.id, s]));
  const layers = layerIds.map(layer => layer.map(id => byId.get(id)!));
  const [shown, setShown] = useState<number[]>([]);
  const frame = useRef<HTMLDivElement>(null);
  const [drawn, setDrawn] = useState<{ width: number; height: number; edges: { d: string; from: string }[] }>({ width: 0, height: 0, edges: [] });
  const visible = layers.map((layer, i) => layer.slice(0, shown[i] ?? LAYER_FIRST));

  // Where each card landed, measured after layout: the edges join the right middle of a card to the left middle of its
  // dependent's. Measured again when the frame's size changes (a narrow screen, text wrapping).
  useLayoutEffect(() => {
    const dag = frame.current;
    if (!dag) return;
    const measure = () => {
      const cards = new Map<string, HTMLElement>();
      dag.querySelectorAll<HTMLElement>("[data-step-id]").forEach(el => cards.set(el.dataset.stepId!, el));
      const more = new Map<number, HTMLElement>();
      dag.querySelectorAll<HTMLElement>("[data-more-layer]").forEach(el => more.set(Number(el.dataset.moreLayer), el));
      const layerOf = new Map<string, number>();
      layers.forEach((layer, i) => layer.forEach(s => layerOf.set(s.id, i)));
      const next: { d: string; from: string }[] = [];
      const seen = new Set<string>();
      for (const layer of visible) for (const s of layer) {
        const to = cards.get(s.id);
        if (!to) continue;
        for (const a of s.after) {
          const from = cards.get(a) ?? more.get(layerOf.get(a) ?? -1);
          const key = `${from?.dataset.stepId ?? `more${from?.dataset.moreLayer}`}>${s.id}`;
          if (!from || seen.has(key)) continue;
          seen.add(key);
          const x1 = from.offsetLeft + from.offsetWidth, y1 = from.offsetTop + from.offsetHeight / 2;
          const x2 = to.offsetLeft, y2 = to.offsetTop + to.offsetHeight / 2;
          const bend = Math.max(12, (x2 - x1) / 2);
          next.push({ d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, from: byId.get(a)?.state ?? "more" });
        }
      }
      const measured = { width: dag.scrollWidth, height: dag.scrollHeight, edges: next };
      setDrawn(old => JSON.stringify(old) === JSON.stringify(measured) ? old : measured);
    };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(dag);
    return () => observer.disconnect();
  });

  return <div class="dag-frame">
    <div class="dag" ref={frame} data-section="graph">
      <svg class="edges" aria-hidden="true" width={drawn.width} height={drawn.height}>
        {drawn.edges.map(e => <path class={`edge edge-${e.from}`} d={e.d} />)}
      </svg>
      {layers.map((layer, i) => {
        const hidden = layer.length - visible[i].length;
        const counts = countByState(layer);
        return <section class="layer" aria-label={`Layer ${i + 1}: ${layer.length} step${layer.length === 1 ? "" : "s"}`} data-layer={i}>
          <h3>Layer {i + 1} <span class="muted">· {count(layer.length)} step{layer.length === 1 ? "" : "s"}</span></h3>
          {layer.length > LAYER_FIRST && <p class="muted layer-counts">{counts.map(([s, n]) => `${count(n)} ${s}`).join(" · ")}</p>}
          <ol class="step-cards">{visible[i].map(s => <StepCard key={s.id} step={s} />)}</ol>
          {hidden > 0 && <div class="more" data-more-layer={i}>
            <strong>+{count(hidden)} more</strong>
            <button type="button" onClick={() => setShown(v => { const n = [...v]; n[i] = (n[i] ?? LAYER_FIRST) + LAYER_MORE; return n; })}>
              Show {count(Math.min(hidden, LAYER_MORE))} more<span class="sr"> steps of layer {i + 1}</span>
            </button>
          </div>}
        </section>;
      })}
    </div>
  </div>;
}

/** Every step in a table, filtered by state, 100 a page: the view for a workflow too wide for its graph. */
function StepList({ workflow: w }: { workflow: Workflow }) {
  const [state, setState] = useState("");
  const [pageIndex, setPageIndex] = useState(0);
  const steps = w.steps.filter(s => !state || (s.state ?? "removed") === state);
  const pages = Math.max(1, Math.ceil(steps.length / LIST_PAGE));
  const at = Math.min(pageIndex, pages - 1);
  const rows = steps.slice(at * LIST_PAGE, (at + 1) * LIST_PAGE);
  return <>
    <div class="filters compact">
      <label>State<select name="step-state" value={state} onChange={e => { setState(e.currentTarget.value); setPageIndex(0); }}>
        <option value="">any</option>{[...TASK_STATES, "removed"].map(s => <option value={s}>{s}</option>)}</select></label>
    </div>
    <div class="scroll"><table class="steps">
      <thead><tr><th scope="col">Step</th><th scope="col">Task</th><th scope="col">State</th><th scope="col">After</th><th scope="col" class="num">Attempts</th><th scope="col">Started</th><th scope="col">Ended</th><th scope="col">Error</th></tr></thead>
      <tbody>{rows.map(s => <tr data-step-id={s.id} data-state={s.state ?? "removed"}>
        <td><a href={href(`tasks/${s.taskId}`)}><code>{s.id}</code></a>{s.onError && <span class="badge bad">error step</span>}</td>
        <td>{s.task ?? <span class="muted">removed</span>}</td>
        <td><StateBadge state={s.state ?? "removed"} /></td>
        <td>{s.after.length > 3 ? `${s.after.slice(0, 3).join(", ")} +${count(s.after.length - 3)}` : s.after.join(", ") || "—"}</td>
        <td class="num">{s.attempts}</td>
        <td title={s.startedAt ?? undefined}>{ago(s.startedAt)}</td>
        <td title={s.finishedAt ?? undefined}>{ago(s.finishedAt)}</td>
        <td class="error-cell">{s.error ? `${s.error.type}: ${s.error.message}` : ""}</td>
      </tr>)}</tbody>
    </table></div>
    {pages > 1 && <nav class="pager" aria-label="Pages of steps">
      <span class="muted">Steps {count(at * LIST_PAGE + 1)}–{count(at * LIST_PAGE + rows.length)} of {count(steps.length)}</span>
      <button type="button" disabled={at === 0} onClick={() => setPageIndex(at - 1)}>Previous</button>
      <button type="button" disabled={at >= pages - 1} onClick={() => setPageIndex(at + 1)}>Next</button>
    </nav>}
  </>;
}
