// Formatting of times, durations, sizes and numbers, in the browser's locale.

export function time(iso?: string | null): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(iso?: string | null, now = Date.now()): string {
  if (!iso) return "—";
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (s < 0) return `in ${duration(-s * 1000)}`;
  if (s < 2) return "just now";
  return `${duration(s * 1000)} ago`;
}

export function duration(ms?: number | null): string {
  if (ms === null || ms === undefined || !isFinite(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function bytes(n: number): string {
  if (!n) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export const count = (n: number) => n.toLocaleString();

/** A count that may be a lower bound: "50,000+" when the server stopped counting there. */
export const atLeast = (n: number, lowerBound: boolean) => lowerBound ? `${count(n)}+` : count(n);
export const LOWER_BOUND_TITLE = "At least this many: the server counts finished tasks up to the newest 50,000";

export function json(value: unknown): string {
  return value === undefined || value === null ? "null" : JSON.stringify(value, null, 2);
}

export function shortId(id: string): string { return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id; }
