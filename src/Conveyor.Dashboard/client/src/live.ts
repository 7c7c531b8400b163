// The live connection: one EventSource on GET /api/v1/events for the whole app. Views subscribe to task events and
// re-read what they show; the header shows whether the stream is up. EventSource reconnects by itself after a network
// error (the server sends retry: 3000); after a refused connection (401, 503) or an overflow it is closed, so this
// opens a new one with a growing delay (1 s to 15 s).
import { useEffect, useRef, useState } from "preact/hooks";
import { API_BASE } from "./api";

export interface TaskEvent {
  type: string; taskId: string; task: string; queue: string; state: string; attempt?: number; at: string;
  workerId?: string; durationMs?: number; error?: { type: string; message: string }; retryAt?: string; origin?: string;
}
export type LiveStatus = "connecting" | "live" | "down";

type Listener = (event: TaskEvent | null) => void;
const listeners = new Set<Listener>();
const statusListeners = new Set<(status: LiveStatus) => void>();
let source: EventSource | null = null;
let status: LiveStatus = "connecting";
let retryDelay = 1000;
let retryTimer: number | undefined;

function setStatus(next: LiveStatus) {
  if (next === status) return;
  status = next;
  statusListeners.forEach(l => l(next));
  // Back after a gap: whatever was missed is read again by every view.
  if (next === "live") listeners.forEach(l => l(null));
}

function open() {
  window.clearTimeout(retryTimer);
  source?.close();
  const es = new EventSource(`${API_BASE}/events`, { withCredentials: true });
  source = es;
  es.onopen = () => { retryDelay = 1000; setStatus("live"); };
  es.addEventListener("task", e => {
    const event = JSON.parse((e as MessageEvent<string>).data) as TaskEvent;
    listeners.forEach(l => l(event));
  });
  es.addEventListener("overflow", () => reopenLater());
  es.onerror = () => {
    setStatus("down");
    if (es.readyState === EventSource.CLOSED) reopenLater();
  };
}

function reopenLater() {
  source?.close();
  source = null;
  setStatus("down");
  window.clearTimeout(retryTimer);
  retryTimer = window.setTimeout(open, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 15000);
}

export function startLive() { if (!source) open(); }
export function stopLive() { window.clearTimeout(retryTimer); source?.close(); source = null; }

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
 * interval (1 s), so a busy server costs the page one request a second per view, whatever the event rate.
 */
export function useLiveData<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[],
  filter: (e: TaskEvent) => boolean = () => true, intervalMs = 1000) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [version, setVersion] = useState(0);
  const state = useRef({ pending: false, timer: 0 as number | undefined, last: 0 });
  const filterRef = useRef(filter);
  filterRef.current = filter;

  useEffect(() => {
    const controller = new AbortController();
    state.current.last = performance.now();
    load(controller.signal)
      .then(d => { setData(d); setError(undefined); })
      .catch(e => { if (!controller.signal.aborted) setError(String(e instanceof Error ? e.message : e)); });
    return () => controller.abort();
  }, [...deps, version]);

  useEffect(() => () => window.clearTimeout(state.current.timer), []);

  useTaskEvents(e => {
    if (e && !filterRef.current(e)) return;
    const s = state.current;
    if (s.pending) return;
    s.pending = true;
    const wait = Math.max(0, intervalMs - (performance.now() - s.last));
    s.timer = window.setTimeout(() => { s.pending = false; setVersion(v => v + 1); }, wait);
  });

  return { data, error, reload: () => setVersion(v => v + 1) };
}
