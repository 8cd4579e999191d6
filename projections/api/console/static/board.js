// 案件总览: counts by status, escalations, the filtered case list; refreshes itself by polling with the log position.
import { PREFIX, api, getToken, showError } from "./api.js";

const OPEN = [
  "reported", "registered", "dispatched", "accepted", "returned",
  "extension_requested", "suspended", "handled", "reopened",
];
const STATUS_LABELS = {};
for (const option of document.querySelectorAll("form#filters select[name=status] option")) {
  if (option.value && option.value !== "open") STATUS_LABELS[option.value] = option.textContent;
}
const LIGHTS = { red: "红灯", yellow: "黄灯", green: "绿灯", none: "无" };
const PAGE = 500;
const ESCALATIONS_SHOWN = 20;

const params = new URLSearchParams(location.search);
const pollMs = Math.max(200, Number(params.get("poll")) || 3000);
const form = document.getElementById("filters");
const error = document.getElementById("error");
const positionEl = document.getElementById("position");
const tbody = document.querySelector("table#board tbody");
const note = document.getElementById("board-note");
const escalationsEl = document.getElementById("escalations");

let position = null; // the log position the board last reflected
let refreshed = 0;
let running = null;
let again = false;
let timer = null;

// The filters come from the address (the map links here with ?grid=…) and write back to it.
for (const name of ["status", "grid", "light"]) {
  if (params.has(name)) form.elements[name].value = params.get(name);
}
form.elements.overdue.checked = ["1", "true", "on"].includes(params.get("overdue") || "");

function filters() {
  return {
    status: form.elements.status.value,
    grid: form.elements.grid.value.trim(),
    overdue: form.elements.overdue.checked,
    light: form.elements.light.value,
  };
}

function remember(current) {
  const next = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(current)) {
    if (value) next.set(key, value === true ? "1" : value);
    else next.delete(key);
  }
  const search = next.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}`);
}

export function lightOf(row) {
  return row.light === "red" || row.light === "yellow" || row.light === "green" ? row.light : "none";
}

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value ?? "";
  if (className) el.className = className;
  return el;
}

function when(value) {
  if (!value) return "";
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return value;
  const pad = (n) => String(n).padStart(2, "0");
  return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ` +
    `${pad(moment.getHours())}:${pad(moment.getMinutes())}`;
}

function caseLink(row) {
  const link = document.createElement("a");
  link.className = "case-link";
  link.href = `${PREFIX}/cases/${encodeURIComponent(row.case_id)}`;
  link.textContent = row.short_id || String(row.case_id).slice(0, 8);
  return link;
}

function lightDot(light) {
  const dot = text("span", "", `light ${light}`);
  dot.title = LIGHTS[light];
  return dot;
}

function renderCounts(summary) {
  for (const el of document.querySelectorAll("#counts [data-status]")) {
    el.querySelector(".count").textContent = String(summary.by_status[el.dataset.status] || 0);
  }
  for (const el of document.querySelectorAll("#counts [data-total]")) {
    el.querySelector(".count").textContent = String(summary[el.dataset.total] ?? 0);
  }
}

function renderEscalations(page) {
  const items = page.cases.slice(0, ESCALATIONS_SHOWN).map((row) => {
    const li = document.createElement("li");
    li.dataset.caseId = row.case_id;
    li.dataset.light = lightOf(row);
    li.append(lightDot(lightOf(row)), " ", caseLink(row), " ");
    if (row.escalation_level > 0) li.append(text("span", `督办 ${row.escalation_level} 级`, "tag escalated"), " ");
    if (row.overdue) li.append(text("span", "超期 overdue", "tag overdue"), " ");
    li.append(
      text("span", `${row.category_name || row.category} · ${STATUS_LABELS[row.status] || row.status} · ` +
        `网格 ${row.grid} · 时限 ${when(row.deadline) || "—"}`),
    );
    return li;
  });
  if (!items.length) items.push(text("li", "无超期或督办案件 Nothing overdue or escalated", "muted"));
  if (page.cases.length > ESCALATIONS_SHOWN) {
    items.push(text("li", `另有 ${page.cases.length - ESCALATIONS_SHOWN} 件 … and more`, "muted"));
  }
  escalationsEl.replaceChildren(...items);
}

function renderBoard(page, light) {
  const rows = page.cases.filter((row) => !light || lightOf(row) === light).map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.caseId = row.case_id;
    tr.dataset.status = row.status;
    tr.dataset.light = lightOf(row);
    if (row.overdue) tr.dataset.overdue = "true";
    const first = document.createElement("td");
    first.append(lightDot(lightOf(row)));
    const idCell = document.createElement("td");
    idCell.append(caseLink(row));
    const deadline = text("td", when(row.deadline));
    if (row.overdue) deadline.append(" ", text("span", "超期", "tag overdue"));
    tr.append(
      first,
      idCell,
      text("td", STATUS_LABELS[row.status] || row.status),
      text("td", row.category_name || row.category),
      text("td", row.grid),
      text("td", row.accountable || ""),
      deadline,
      text("td", when(row.reported_at)),
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
  const more = page.next_cursor ? `（仅显示前 ${PAGE} 件 first ${PAGE} shown）` : "";
  note.textContent = `共 ${rows.length} 件 ${rows.length} cases ${more}`;
}

async function load() {
  const current = filters();
  const since = position === null ? {} : { position };
  const query = {
    ...since,
    status: current.status === "open" ? OPEN.join(",") : current.status,
    grid: current.grid,
    overdue: current.overdue ? "true" : "",
    limit: PAGE,
  };
  const [summary, escalations, board] = await Promise.all([
    api("/v1/board/summary", { query: since }),
    api("/v1/board/escalations", { query: { ...since, limit: 100 } }),
    api("/v1/board", { query }),
  ]);
  renderCounts(summary);
  renderEscalations(escalations);
  renderBoard(board, current.light);
  const at = board.consistency && board.consistency.position;
  if (at !== null && at !== undefined) {
    position = at;
    positionEl.dataset.position = String(at);
    positionEl.textContent = `位置 position ${at}`;
  }
  showError(error, null);
}

/** Refresh now (once at a time; a request during a refresh runs one more after it), then poll again. */
export async function refresh() {
  if (running) {
    again = true;
    return running;
  }
  clearTimeout(timer);
  running = (async () => {
    do {
      again = false;
      try {
        await load();
        refreshed += 1;
        document.body.dataset.refreshed = String(refreshed);
      } catch (problem) {
        showError(error, problem);
      }
    } while (again);
  })();
  try {
    await running;
  } finally {
    running = null;
    timer = setTimeout(refresh, pollMs);
  }
}

form.addEventListener("change", () => {
  remember(filters());
  refresh();
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  remember(filters());
  refresh();
});
form.addEventListener("reset", () => {
  setTimeout(() => {
    remember(filters());
    refresh();
  });
});

if (getToken()) refresh();
