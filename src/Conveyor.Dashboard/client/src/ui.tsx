// Small shared pieces: state badges, the confirmation dialog, notices and the SVG time-series chart.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

export function StateBadge({ state }: { state: string }) {
  return <span class={`badge state-${state}`}>{state}</span>;
}

export function ErrorNote({ error }: { error?: string }) {
  return error ? <p class="note error" role="alert">{error}</p> : null;
}

// One confirmation dialog for the app: confirm() resolves true when the user accepts it. A native <dialog> opened with
// showModal() traps focus, closes on Escape and returns focus to the button that opened it.
interface ConfirmRequest { title: string; body: ComponentChildren; action: string; danger: boolean; resolve: (ok: boolean) => void }
let showConfirm: (request: ConfirmRequest) => void = () => { };

export function confirm(title: string, body: ComponentChildren, action: string, danger = true): Promise<boolean> {
  return new Promise(resolve => showConfirm({ title, body, action, danger, resolve }));
}

export function ConfirmHost() {
  const [request, setRequest] = useState<ConfirmRequest | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => { showConfirm = setRequest; }, []);
  useEffect(() => { if (request && dialog.current && !dialog.current.open) dialog.current.showModal(); }, [request]);
  const close = (ok: boolean) => { dialog.current?.close(); request?.resolve(ok); setRequest(null); };
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby="confirm-title" onCancel={e => { e.preventDefault(); close(false); }}>
      {request && <form method="dialog" onSubmit={e => { e.preventDefault(); close(true); }}>
        <h2 id="confirm-title">{request.title}</h2>
        <div class="confirm-body">{request.body}</div>
        <div class="actions">
          <button type="button" onClick={() => close(false)}>Cancel</button>
          <button type="submit" class={request.danger ? "danger" : "primary"} autofocus>{request.action}</button>
        </div>
      </form>}
    </dialog>
  );
}

// Notices after actions ("3 tasks queued again"), read out by screen readers.
let pushNotice: (text: string, kind: "ok" | "error") => void = () => { };
export function notify(text: string, kind: "ok" | "error" = "ok") { pushNotice(text, kind); }

export function NoticeHost() {
  const [notices, setNotices] = useState<{ id: number; text: string; kind: string }[]>([]);
  useEffect(() => {
    let next = 0;
    pushNotice = (text, kind) => {
      const id = ++next;
      setNotices(n => [...n.slice(-3), { id, text, kind }]);
      window.setTimeout(() => setNotices(n => n.filter(x => x.id !== id)), 6000);
    };
  }, []);
  return <div class="notices" role="status" aria-live="polite">
    {notices.map(n => <p key={n.id} class={`notice ${n.kind}`}>{n.text}</p>)}
  </div>;
}

/** Runs an action; shows its outcome as a notice; false when it failed. */
export async function act<T>(run: () => Promise<T>, done: (result: T) => string): Promise<boolean> {
  try {
    notify(done(await run()));
    return true;
  } catch (e) {
    notify(e instanceof Error ? e.message : String(e), "error");
    return false;
  }
}

/** One line: its values per bucket (null where there is none), and what its legend says (a total, an average). */
export interface Series { name: string; className: string; values: (number | null)[]; summary: string }

/** A line chart of series over the same buckets, drawn as SVG; its table of numbers is the accessible alternative. */
export function Chart({ title, times, series, unit, format }: {
  title: string; times: string[]; series: Series[]; unit: string; format: (n: number) => string;
}) {
  const width = 600, height = 170, left = 58, bottom = 18, top = 8;
  const all = series.flatMap(s => s.values.filter((v): v is number => v !== null));
  const max = Math.max(1, ...all);
  const n = Math.max(1, times.length - 1);
  const x = (i: number) => left + (i / n) * (width - left - 4);
  const y = (v: number) => top + (1 - v / max) * (height - top - bottom);
  const path = (values: (number | null)[]) => {
    let d = "", pen = false;
    values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return d;
  };
  const label = (iso?: string) => iso ? new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : "";
  return (
    <figure class="chart" data-chart={title}>
      <figcaption>
        <strong>{title}</strong>
        {series.map(s => <span class={`legend ${s.className}`}>{s.name}: {s.summary}</span>)}
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title} over the last ${times.length} intervals, in ${unit}`}>
        {[0, 0.5, 1].map(f => <g>
          <line class="grid" x1={left} x2={width - 4} y1={y(max * f)} y2={y(max * f)} />
          <text class="axis" x={left - 4} y={y(max * f) + 4} text-anchor="end">{format(max * f)}</text>
        </g>)}
        <text class="axis" x={left} y={height - 4}>{label(times[0])}</text>
        <text class="axis" x={width - 4} y={height - 4} text-anchor="end">{label(times[times.length - 1])}</text>
        {series.map(s => <path class={`line ${s.className}`} d={path(s.values)} />)}
        {/* A value with no neighbour draws no line: a dot shows it. */}
        {series.map(s => s.values.map((v, i) => v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null
          ? <circle class={`dot ${s.className}`} cx={x(i)} cy={y(v)} r="3" /> : null))}
      </svg>
    </figure>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}
