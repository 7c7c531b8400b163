// The live connection: one EventSource on GET /api/v1/events for the whole app. Views subscribe to task events and
// re-read what they show; the header shows whether the stream is up. EventSource reconnects by itself after a network
// error (the server sends retry: 3000); after a refused connection (401, 503) or an overflow it is closed, so this
// opens a new one with a growing delay (1 s to 15 s).
import { useEffect, useRef, useState } from "preact/hooks";
import { API_BASE } from "./api";

export interface TaskEvent {
  type: string; taskId: string; task: string; queue: string; state: string; attempt?: number; at: string;
  workerId?: string; durationMs?: number; error?: { type: string; message: string }; retryAt?: string; origin?: string;
  // A workflow step's events name its workflow and step; a workflow's own events ("workflow.…") name the workflow.
  workflowId?: string; stepId?: string;
}
export type LiveStatus = "connecting" | "live" | "down";

type Listener = (event: TaskEvent | null) => void;

/** One EventSource on the events endpoint with a query, reopened after a refusal or an overflow; onEvent(null) each time
 * it is (back) up, so a listener re-reads what it may have missed. */
class EventStream {
  private source: EventSource | null = null;
  private status: LiveStatus = "connecting";
  private retryDelay = 1000;
  private retryTimer: number | undefined;

  constructor(private readonly url: string, private readonly onEvent: Listener,
    private readonly onStatus: (status: LiveStatus) => void = () => { }) { }

  start() { if (!this.source) this.open(); }

  stop() { window.clearTimeout(this.retryTimer); this.source?.close(); this.source = null; }

  private setStatus(next: LiveStatus) {
    if (next === this.status) return;
    this.status = next;
    this.onStatus(next);
    // Back after a gap: whatever was missed is read again.
    if (next === "live") this.onEvent(null);
  }

  private open() {
    window.clearTimeout(this.retryTimer);
    this.source?.close();
    const es = new EventSource(this.url, { withCredentials: true });
    this.source = es;
    es.onopen = () => { this.retryDelay = 1000; this.setStatus("live"); };
    es.addEventListener("task", e => this.onEvent(JSON.parse((e as MessageEvent<string>).data) as TaskEvent));
    // A workflow's own transition reaches listeners in a task event's shape, with no task: type "workflow.created" …
    es.addEventListener("workflow", e => {
      const w = JSON.parse((e as MessageEvent<string>).data) as { type: string; workflowId: string; state: string; at: string; origin?: string };
      this.onEvent({ type: `workflow.${w.type}`, taskId: "", task: "", queue: "", state: w.state, at: w.at, origin: w.origin, workflowId: w.workflowId });
    });
    es.addEventListener("overflow", () => this.reopenLater());
    es.onerror = () => {
      this.setStatus("down");
      if (es.readyState === EventSource.CLOSED) this.reopenLater();
    };
  }

  private reopenLater() {
    this.source?.close();
    this.source = null;
    this.setStatus("down");
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.open(), this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 15000);
  }
}

// The app's stream of every event, which the header's status shows.
const listeners = new Set<Listener>();
const statusListeners = new Set<(status: LiveStatus) => void>();
let status: LiveStatus = "connecting";
const appStream = new EventStream(`${API_BASE}/events`, e => listeners.forEach(l => l(e)), next => {
  status = next;
  statusListeners.forEach(l => l(next));
});

export function startLive() { appStream.start(); }
export function stopLive() { appStream.stop(); }

export function useLiveStatus(): LiveStatus {
  const [value, setValue] = useState(status);
  useEffect(() => { statusListeners.add(setValue); setValue(status); return () => { statusListeners.delete(setValue); }; }, []);
  return value;
}

/** Calls listener for each task event (null after a reconnect: re-read everything). */
export function useTaskEvents(listener: Listener) {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => {
    const l: Listener = e => ref.current(e);
    listeners.add(l);
    return () => { listeners.delete(l); };
  }, []);
}

/**
 * Loads data with load(), and loads it again when a task event passes filter (or after a reconnect), at most once per
 * interval (1 s), so a busy server costs the page one request a second per view, whatever the event rate. One read at a
 * time: events during a read ask for one more after it (a read slower than the interval is never cut short by the
 * next, which would leave the view without data for as long as events come); a change of deps drops the read of the
 * old query and starts one for the new.
 * maxAgeMs: load() may answer with data read up to that long before it was called (a read the server shares, as the
 * queues' counts); when an event came less than that before a read started, the data may predate it, so the view
 * reads once more (at most once per interval, as for an event).
 */
export function useLiveData<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[],
  filter: (e: TaskEvent) => boolean = () => true, intervalMs = 1000, maxAgeMs = 0) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const state = useRef({
    pending: false, timer: 0 as number | undefined, last: 0,
    controller: undefined as AbortController | undefined, again: false, eventAt: Number.NEGATIVE_INFINITY,
  });
  const loadRef = useRef(load);
  loadRef.current = load;
  const filterRef = useRef(filter);
  filterRef.current = filter;

  // A reload at most once per interval, however many events ask for one.
  const poke = () => {
    const s = state.current;
    if (s.pending) return;
    s.pending = true;
    const wait = Math.max(0, intervalMs - (performance.now() - s.last));
    s.timer = window.setTimeout(() => { s.pending = false; read(); }, wait);
  };

  const read = () => {
    const s = state.current;
    if (s.controller) { s.again = true; return; }
    const controller = new AbortController();
    s.controller = controller;
    s.again = false;
    const started = performance.now();
    s.last = started;
    loadRef.current(controller.signal)
      .then(d => {
        if (controller.signal.aborted) return;
        setData(d);
        setError(undefined);
        if (maxAgeMs > 0 && s.eventAt > started - maxAgeMs) s.again = true;
      })
      .catch(e => { if (!controller.signal.aborted) setError(String(e instanceof Error ? e.message : e)); })
      .finally(() => {
        if (s.controller !== controller) return;
        s.controller = undefined;
        if (s.again) poke();
      });
  };

  useEffect(() => {
    const s = state.current;
    s.controller?.abort();
    s.controller = undefined;
    read();
    return () => {
      s.controller?.abort();
      s.controller = undefined;
    };
  }, deps);

  useEffect(() => () => window.clearTimeout(state.current.timer), []);

  useTaskEvents(e => {
    if (e && !filterRef.current(e)) return;
    state.current.eventAt = performance.now();
    poke();
  });

  return { data, error, reload: read, poke };
}

/**
 * Calls listener for each event of a stream of its own on the events endpoint with query (such as workflow=ID), and
 * with null when that stream is (back) up. For a view that follows a few tasks among many: the server filters, so the
 * view's stream carries only its events and does not overflow when the app's stream does.
 */
export function useFilteredEvents(query: string, listener: Listener) {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => {
    const stream = new EventStream(`${API_BASE}/events?${query}`, e => ref.current(e));
    stream.start();
    return () => stream.stop();
  }, [query]);
}

/** Calls tick every ms milliseconds while the view is shown (for what raises no event). */
export function useInterval(tick: () => void, ms: number) {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => { const t = window.setInterval(() => ref.current(), ms); return () => window.clearInterval(t); }, [ms]);
}
