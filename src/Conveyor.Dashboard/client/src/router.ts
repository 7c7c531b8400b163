// A small router on the History API, relative to <base href>: the server answers index.html for every client route.
import { useEffect, useState } from "preact/hooks";

const base = new URL(document.baseURI).pathname.replace(/\/?$/, "/");

/** The route inside the app: "" for the overview, "tasks", "tasks/ID", with the query string. */
export function currentRoute(): { path: string; query: URLSearchParams } {
  const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : location.pathname.replace(/^\//, "");
  return { path: decodeURIComponent(path.replace(/\/$/, "")), query: new URLSearchParams(location.search) };
}

export function href(path: string, query?: URLSearchParams | Record<string, string>): string {
  const q = query ? new URLSearchParams(query).toString() : "";
  return base + path.replace(/^\//, "") + (q ? `?${q}` : "");
}

const routeListeners = new Set<() => void>();
export function navigate(to: string, replace = false) {
  if (replace) history.replaceState(null, "", to); else history.pushState(null, "", to);
  routeListeners.forEach(l => l());
  if (!replace) window.scrollTo(0, 0);
}
window.addEventListener("popstate", () => routeListeners.forEach(l => l()));

// Same-origin links inside the app are followed without a reload; modified clicks keep the browser's behaviour.
document.addEventListener("click", e => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download") || a.origin !== location.origin || !a.pathname.startsWith(base)) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});

export function useRoute() {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const l = () => setRoute(currentRoute());
    routeListeners.add(l);
    return () => { routeListeners.delete(l); };
  }, []);
  return route;
}
