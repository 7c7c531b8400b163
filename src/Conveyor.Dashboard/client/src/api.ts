// Calls to Conveyor's HTTP API v1 (docs/http-api.md), relative to the API base the server wrote into index.html.

export type TaskState = "pending" | "scheduled" | "queued" | "running" | "succeeded" | "retrying" | "dead" | "cancelled" | "expired";
// pending: a workflow step waiting for the steps it runs after.
export const TASK_STATES: TaskState[] = ["pending", "scheduled", "queued", "running", "succeeded", "retrying", "dead", "cancelled", "expired"];

export interface TaskError { type: string; message: string; detail?: string | null }
export interface Task {
  id: string; task: string; queue: string; state: TaskState; priority: number;
  args?: unknown; result?: unknown; error?: TaskError | null;
  errors: { attempt: number; at: string; error: TaskError }[];
  attempts: number; maxAttempts: number;
  createdAt: string; startedAt?: string | null; finishedAt?: string | null; notBefore?: string | null; expiresAt?: string | null;
  idempotencyKey?: string | null; headers?: Record<string, string> | null; workerId?: string | null; cancelRequested: boolean;
  transitions: { state: TaskState; at: string }[];
}
export interface TaskPage { items: Task[]; nextCursor: string | null }
export interface Queue {
  name: string; pending: number; queued: number; scheduled: number; running: number; succeeded: number; retrying: number;
  dead: number; cancelled: number; expired: number; paused: boolean;
  // States whose count is a lower bound: the server stopped counting finished tasks at its limit (shown "50,000+").
  lowerBounds: TaskState[];
}
// How old the queues' counts may be (ms): the server shares one read among the pages that ask within it.
export const QUEUES_MAX_AGE_MS = 1000;
export interface Worker {
  id: string; host: string; processId: number; queues: string[]; concurrency: number; running: number;
  processed: number; failed: number; startedAt: string; heartbeatAt: string; version?: string | null;
  tasks: string[]; runningTasks: { id: string; task: string; attempt: number; startedAt: string }[];
  memoryBytes: number; alive?: boolean | null;
}
export interface Schedule {
  name: string; cron?: string | null; every?: string | null; timeZone: string; task: string; queue: string;
  paused: boolean; source: string; lastFireAt?: string | null; lastTaskId?: string | null; missed: number; nextFireTimes: string[];
}
export interface Limit {
  task?: string | null; queue?: string | null; rate?: string | null; concurrency?: number | null; concurrencyKey?: string | null;
  reservedUntil?: string | null; running: number; runningByKey?: Record<string, number> | null;
}
export interface StatsBucket {
  at: string; enqueued: number; started: number; succeeded: number; failed: number; dead: number;
  waitCount: number; waitMsAvg: number | null; waitMsMax: number | null;
}
export interface QueueRate { queue: string; succeeded: number; failed: number; waitMsAvg: number | null }
export interface Stats { since: string; bucketSeconds: number; buckets: StatsBucket[]; queues: QueueRate[]; windowSeconds: number }
export type WorkflowState = "running" | "succeeded" | "failed" | "cancelled";
export const WORKFLOW_STATES: WorkflowState[] = ["running", "succeeded", "failed", "cancelled"];
export interface WorkflowStep {
  id: string; after: string[]; taskId: string; onFailure: "stop" | "continue"; onError?: boolean;
  // The fields below are null or absent in list items (the list gives the graph, not the steps' states).
  task?: string | null; state?: TaskState | null; attempts: number;
  createdAt?: string | null; startedAt?: string | null; finishedAt?: string | null; result?: unknown; error?: TaskError | null;
}
export interface Workflow {
  id: string; name?: string | null; state: WorkflowState; createdAt: string; finishedAt?: string | null; steps: WorkflowStep[];
}
export interface WorkflowPage { items: Workflow[]; nextCursor: string | null }
export interface Session { keysRequired: boolean; authenticated: boolean; scopes?: string[] }
export interface UserSession { authenticated: boolean; codeRequired: boolean; enrolmentRequired: boolean; scopes: string[] }
export interface MfaEnrolment { secret: string; uri: string; qrSvg: string }
export interface MfaConfirmed { recoveryCodes: string[]; scopes: string[] }
export interface SessionUser { user: string; role: string; mfaEnabled: boolean; recoveryCodesLeft: number; enrolmentRequired: boolean; scopes: string[] }
export interface AuditEntry {
  id: string; at: string; actor: string; actorKind: string; action: string; target?: string | null;
  outcome: "ok" | "refused" | "failed"; status?: number | null; remoteAddress?: string | null; userAgent?: string | null; details?: unknown;
}
export interface AuditPage { entries: AuditEntry[]; nextCursor: string | null }

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly problem?: Record<string, unknown>) { super(message); }
}

const apiMeta = document.querySelector<HTMLMetaElement>('meta[name="conveyor-api"]')?.content;
/** The API's base path, such as /api/v1 or /app/api/v1 (no trailing slash). */
export const API_BASE = (apiMeta && !apiMeta.startsWith("%") ? apiMeta : "/api/v1").replace(/\/$/, "");

let onUnauthorized: () => void = () => { };
export function setUnauthorizedHandler(handler: () => void) { onUnauthorized = handler; }

function csrfToken(): string | undefined {
  return document.cookie.split("; ").find(c => c.startsWith("conveyor_csrf="))?.slice("conveyor_csrf=".length);
}

export async function call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const csrf = csrfToken();
  if (method !== "GET" && csrf) headers["x-conveyor-csrf"] = decodeURIComponent(csrf);
  const response = await fetch(API_BASE + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal,
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : undefined;
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/session")) onUnauthorized();
    const problem = json as Record<string, unknown> | undefined;
    const detail = (problem?.detail as string | undefined) ?? (problem?.title as string | undefined) ?? response.statusText;
    throw new ApiError(response.status, `${response.status}: ${detail}`, problem);
  }
  return json as T;
}

export const api = {
  session: () => call<Session>("GET", "/session"),
  login: (key: string) => call<Session>("POST", "/session", { key }),
  logout: () => call<Session>("DELETE", "/session"),
  userLogin: (user: string, password: string, code?: string) => call<UserSession>("POST", "/session/login", { user, password, code }),
  beginMfa: () => call<MfaEnrolment>("POST", "/session/mfa/enrol", {}),
  confirmMfa: (code: string) => call<MfaConfirmed>("POST", "/session/mfa/confirm", { code }),
  renewRecoveryCodes: (code: string) => call<{ recoveryCodes: string[] }>("POST", "/session/mfa/recovery-codes", { code }),
  me: () => call<SessionUser>("GET", "/session/me"),
  tasks: (query: URLSearchParams, signal?: AbortSignal) => call<TaskPage>("GET", `/tasks?${query}`, undefined, signal),
  task: (id: string, signal?: AbortSignal) => call<Task>("GET", `/tasks/${encodeURIComponent(id)}`, undefined, signal),
  cancel: (id: string) => call<Task>("POST", `/tasks/${encodeURIComponent(id)}/cancel`),
  retry: (id: string) => call<Task>("POST", `/tasks/${encodeURIComponent(id)}/retry`),
  retryMany: (filter: Record<string, unknown>) => call<{ retried: number }>("POST", "/tasks/retry", filter),
  purge: (filter: Record<string, unknown>) => call<{ purged: number }>("POST", "/tasks/purge", filter),
  queues: (signal?: AbortSignal) => call<Queue[]>("GET", `/queues?maxAge=${QUEUES_MAX_AGE_MS / 1000}`, undefined, signal),
  pauseQueue: (name: string) => call<Queue>("POST", `/queues/${encodeURIComponent(name)}/pause`),
  resumeQueue: (name: string) => call<Queue>("POST", `/queues/${encodeURIComponent(name)}/resume`),
  workers: (signal?: AbortSignal) => call<Worker[]>("GET", "/workers", undefined, signal),
  schedules: (signal?: AbortSignal) => call<Schedule[]>("GET", "/schedules", undefined, signal),
  pauseSchedule: (name: string) => call<Schedule>("POST", `/schedules/${encodeURIComponent(name)}/pause`),
  resumeSchedule: (name: string) => call<Schedule>("POST", `/schedules/${encodeURIComponent(name)}/resume`),
  triggerSchedule: (name: string) => call<{ taskId: string }>("POST", `/schedules/${encodeURIComponent(name)}/trigger`),
  limits: (signal?: AbortSignal) => call<Limit[]>("GET", "/limits", undefined, signal),
  stats: (signal?: AbortSignal) => call<Stats>("GET", "/stats", undefined, signal),
  workflows: (query: URLSearchParams, signal?: AbortSignal) => call<WorkflowPage>("GET", `/workflows?${query}`, undefined, signal),
  workflow: (id: string, signal?: AbortSignal) => call<Workflow>("GET", `/workflows/${encodeURIComponent(id)}`, undefined, signal),
  cancelWorkflow: (id: string) => call<Workflow>("POST", `/workflows/${encodeURIComponent(id)}/cancel`),
  audit: (query: URLSearchParams, signal?: AbortSignal) => call<AuditPage>("GET", `/audit?${query}`, undefined, signal),
  retryWorkflow: (id: string) => call<Workflow>("POST", `/workflows/${encodeURIComponent(id)}/retry`),
};
