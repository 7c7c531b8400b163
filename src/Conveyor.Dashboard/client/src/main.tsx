// Conveyor's dashboard: the shell (navigation, live status, sign-in) and the route table.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, setUnauthorizedHandler } from "./api";
import { startLive, stopLive, useLiveStatus } from "./live";
import { href, useRoute } from "./router";
import { ConfirmHost, NoticeHost } from "./ui";
import { Overview } from "./views/overview";
import { TasksView } from "./views/tasks";
import { TaskView } from "./views/task";
import { QueuesView } from "./views/queues";
import { WorkersView } from "./views/workers";
import { SchedulesView } from "./views/schedules";
import { WorkflowsView } from "./views/workflows";
import { WorkflowView } from "./views/workflow";
import { LimitsView } from "./views/limits";
import { AuditView } from "./views/audit";
import { Login } from "./views/login";
import { AccountView } from "./views/account";

const NAV: [string, string][] = [["", "Overview"], ["tasks", "Tasks"], ["queues", "Queues"], ["workers", "Workers"], ["schedules", "Schedules"], ["workflows", "Workflows"], ["limits", "Limits"]];
// Shown to admin sessions only: the audit log needs the admin scope.
const ADMIN_NAV: [string, string][] = [["audit", "Audit"]];

function LiveIndicator() {
  const status = useLiveStatus();
  const text = status === "live" ? "Live" : status === "connecting" ? "Connecting…" : "Disconnected — reconnecting…";
  return <span class={`live live-${status}`} role="status" aria-live="polite" data-live={status}>
    <span class="dot" aria-hidden="true" />{text}
  </span>;
}

function View({ admin }: { admin: boolean | undefined }) {
  const { path, query } = useRoute();
  const [section, id] = path.split("/", 2);
  useEffect(() => {
    const name = [...NAV, ...ADMIN_NAV, ["account", "Account"]].find(([p]) => p === section)?.[1] ?? "Not found";
    document.title = `${id ? `${name}: ${id}` : name} · Conveyor`;
  }, [section, id]);
  switch (section) {
    case "": return <Overview />;
    case "tasks": return id ? <TaskView id={id} /> : <TasksView query={query} />;
    case "queues": return <QueuesView />;
    case "workers": return <WorkersView />;
    case "schedules": return <SchedulesView />;
    case "workflows": return id ? <WorkflowView id={id} query={query} /> : <WorkflowsView query={query} />;
    case "limits": return <LimitsView />;
    case "account": return <AccountView />;
    // Until the session's answer says (undefined), nothing rather than a refusal that may not hold.
    case "audit": return admin === undefined ? null : admin ? <AuditView query={query} /> : <section><h1>Audit</h1><p>The audit log needs a key with the <code>admin</code> scope.</p></section>;
    default: return <section><h1>Not found</h1><p>No page at <code>{path}</code>. <a href={href("")}>Overview</a></p></section>;
  }
}

function App() {
  const { path } = useRoute();
  const section = path.split("/")[0];
  // Whether keys are required and this browser may call the API. The views start at once, without waiting for the
  // session's answer (a round trip less before the first paint); a 401 from any call, or the answer, shows the sign-in.
  // admin: whether the session may see the admin-only views (the API still checks every call).
  const [session, setSession] = useState<{ required: boolean; ok: boolean; admin?: boolean }>({ required: false, ok: true });
  // The signed-in user's name, when the session is a user's (not a key's): the header links to the account page.
  const [userName, setUserName] = useState<string>();
  const [menuOpen, setMenuOpen] = useState(false);

  useEffect(() => {
    setUnauthorizedHandler(() => setSession({ required: true, ok: false }));
    api.session()
      .then(s => setSession({ required: s.keysRequired, ok: s.authenticated, admin: s.scopes?.includes("admin") }))
      // A host app that maps the dashboard but not the session endpoint: try the API as it is.
      .catch(e => setSession({ required: false, ok: !(e instanceof ApiError && e.status === 401) }));
  }, []);
  useEffect(() => { if (session.ok) startLive(); else stopLive(); }, [session.ok]);
  useEffect(() => {
    if (!session.ok || !session.required) { setUserName(undefined); return; }
    api.me().then(me => setUserName(me.user), () => setUserName(undefined));
  }, [session.ok, session.required]);
  useEffect(() => setMenuOpen(false), [path]);

  if (!session.ok) return <Login onSignedIn={scopes => setSession({ required: true, ok: true, admin: scopes.includes("admin") })} />;
  return <>
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href={href("")}>Conveyor</a>
      <button class="menu" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>Menu</button>
      <nav id="nav" class={menuOpen ? "open" : ""} aria-label="Main">
        {[...NAV, ...(session.admin ? ADMIN_NAV : [])].map(([p, name]) => <a href={href(p)} aria-current={section === p ? "page" : undefined}>{name}</a>)}
      </nav>
      <LiveIndicator />
      {userName && <a class="account-link" href={href("account")} aria-current={section === "account" ? "page" : undefined}>{userName}</a>}
      {session.required && <button class="link" onClick={() => api.logout().finally(() => { stopLive(); setSession({ required: true, ok: false }); })}>Sign out</button>}
    </header>
    <main id="main" tabIndex={-1}><View admin={session.admin} /></main>
    <ConfirmHost />
    <NoticeHost />
  </>;
}

const root = document.getElementById("app")!;
root.textContent = "";
render(<App />, root);
