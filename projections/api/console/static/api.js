// gridloop console: the token, the API fetch helper, the header (who is signed in), sign-out.
// Every page module imports this one; the browser evaluates it once per page.

export const PREFIX = "/console";
export const SIGNIN = `${PREFIX}/signin`;
const TOKEN_KEY = "gridloop.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An API refusal: `problem` is the problem+json body (type, title, status, detail, …). */
export class ApiError extends Error {
  constructor(problem) {
    super(problemText(problem));
    this.name = "ApiError";
    this.problem = problem;
    this.status = problem.status;
  }
}

/** How the console shows a problem: the API's own words, title and detail. */
export function problemText(problem) {
  if (!problem) return "";
  if (problem.problem) problem = problem.problem; // an ApiError
  if (problem instanceof Error) return problem.message;
  const title = problem.title || "";
  const detail = problem.detail || "";
  return title && detail ? `${title}: ${detail}` : title || detail;
}

/** Show an error (an ApiError, a problem or a message) in `el`, or clear it with null. */
export function showError(el, error) {
  if (!el) return;
  el.textContent = error == null ? "" : typeof error === "string" ? error : problemText(error);
}

/** The log position of the last API answer (header X-Gridloop-Position), or null. */
export let lastPosition = null;

function signInAgain() {
  clearToken();
  if (location.pathname !== SIGNIN) {
    const next = location.pathname + location.search;
    location.replace(`${SIGNIN}?next=${encodeURIComponent(next)}`);
  }
}

function url(path, query) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    target.searchParams.set(key, String(value));
  }
  return target.pathname + target.search;
}

async function send(path, opts = {}) {
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  const token = opts.token ?? getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let response;
  try {
    response = await fetch(url(path, opts.query), { method: opts.method || (body ? "POST" : "GET"), headers, body });
  } catch (error) {
    throw new ApiError({ title: "网络错误 Network error", detail: String(error), status: 0 });
  }
  const position = response.headers.get("X-Gridloop-Position");
  if (position !== null) lastPosition = Number(position);
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText || `HTTP ${response.status}`, detail: "", status: response.status };
    }
    if (problem.status === undefined) problem.status = response.status;
    if (response.status === 401 && !opts.noRedirect) signInAgain();
    throw new ApiError(problem);
  }
  return response;
}

/**
 * Call the API: `api("/v1/board", {query: {status: "dispatched"}})`, `api(path, {body: {...}})` (POSTs JSON).
 * Answers the JSON body; throws an ApiError carrying the problem. A 401 sends the browser to sign in again
 * (unless `noRedirect`).
 */
export async function api(path, opts = {}) {
  const response = await send(path, opts);
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Fetch a binary answer (a chart) with the token; answers an object URL for an <img src>. */
export async function apiBlob(path, opts = {}) {
  const response = await send(path, { ...opts, headers: { Accept: "*/*", ...(opts.headers || {}) } });
  return URL.createObjectURL(await response.blob());
}

/** A fresh client command id. */
export function commandId(prefix = "console") {
  const random =
    globalThis.crypto && crypto.randomUUID
      ? crypto.randomUUID()
      : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `${prefix}-${random}`;
}

let me = null;

/** The signed-in principal (GET /v1/whoami, once per page): name, role, jurisdiction, actor, commands, reads. */
export function whoami() {
  if (!me) me = api("/v1/whoami");
  return me;
}

const ROLES = {
  dispatcher: "派遣员",
  grid_worker: "网格员",
  department: "职能部门",
  supervisor: "督办",
  auditor: "审计",
  analyst: "分析",
  admin: "管理员",
  reporter: "受理渠道",
};

export function roleLabel(role) {
  return ROLES[role] ? `${ROLES[role]} ${role}` : role;
}

function renderHeader(principal) {
  const el = document.getElementById("whoami");
  if (!el) return;
  el.textContent = `${principal.name} · ${roleLabel(principal.role)} · 辖区 ${principal.jurisdiction}`;
  el.dataset.name = principal.name;
  el.dataset.role = principal.role;
  el.dataset.jurisdiction = principal.jurisdiction;
}

function start() {
  const signout = document.getElementById("signout");
  if (signout) {
    signout.addEventListener("click", (event) => {
      event.preventDefault();
      clearToken();
      location.assign(SIGNIN);
    });
  }
  if (location.pathname === SIGNIN) return;
  if (!getToken()) {
    signInAgain();
    return;
  }
  whoami().then(renderHeader, () => {}); // a 401 has already sent the browser to sign in
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
