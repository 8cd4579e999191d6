// gridloop console: one case — its details, its trace (痕迹) and the actions the caller may take now.
import { api, apiBlob, commandId, getToken, showError } from "./api.js";

const STATUS = {
  reported: "上报",
  registered: "立案",
  rejected: "不予立案",
  merged: "合并",
  dispatched: "派遣",
  accepted: "签收",
  returned: "退单",
  extension_requested: "延期申请",
  suspended: "挂账",
  handled: "处置反馈",
  reopened: "返工",
  closed: "结案",
  evaluated: "回访考评",
};

const ACTIONS = {
  register: "立案",
  reject: "不予立案",
  merge: "合并",
  dispatch: "派遣",
  hand_over: "通办流转",
  accept: "签收",
  return: "退单",
  reassign: "改派",
  request_extension: "申请延期",
  grant_extension: "批准延期",
  deny_extension: "驳回延期",
  suspend: "挂账",
  resume: "恢复",
  report_handling: "处置反馈",
  verify: "核查",
  escalate: "督办",
  warn_deadline: "预警催办",
  recategorise: "改类",
  call_back: "回访",
  miss_call_back: "回访未果",
  reopen: "重新打开",
};

const FIELDS = {
  reason: "理由 Reason",
  note: "备注 Note",
  unit: "单位 Unit",
  worker: "网格员 Worker",
  deadline: "时限 Deadline",
  category: "类别 Category",
  reason_code: "理由代码 Reason code",
  rule: "依据 Rule",
  into_case: "并入案件 Into case",
  until: "延期至 Until",
  result: "处置结果 Result",
  photos: "照片 Photos",
  passed: "核查通过 Passed",
  level: "督办级别 Level",
  due: "应答时限 Due",
  satisfaction: "满意度 Satisfaction (1–5)",
  fixed: "已解决 Fixed",
};

const HINTS = {
  deadline: "留空: 按类别时限 Empty: the category's time limit",
  photos: "逗号分隔 Comma-separated",
};

/** Fields a form never shows: set by the page (command id, the case from the path) or not for people. */
const HIDDEN = new Set(["command_id", "case_id", "occurred_at", "inputs"]);
const LONG_TEXT = new Set(["reason", "note", "result"]);
const ZONE = "Asia/Shanghai";

const root = document.getElementById("case");
const errorEl = document.getElementById("error");
const noticeEl = document.getElementById("notice");
const requested = root.dataset.case;
let loads = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.dataset[camel(key.slice(5))] = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function camel(name) {
  return name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
}

export function statusLabel(status) {
  return STATUS[status] ? `${STATUS[status]} ${status}` : status || "";
}

function actionLabel(action) {
  return ACTIONS[action] ? `${ACTIONS[action]} ${action}` : action;
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString("zh-CN", { timeZone: ZONE, hour12: false });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let rest = Math.round(seconds / 60);
  const days = Math.floor(rest / 1440);
  rest -= days * 1440;
  const hours = Math.floor(rest / 60);
  const minutes = rest - hours * 60;
  return `${days ? `${days}天` : ""}${days || hours ? `${hours}时` : ""}${minutes}分`;
}

// ---- details -------------------------------------------------------------------------------------------

function details(c) {
  const dl = document.getElementById("details");
  const light = c.light || "none";
  const rows = [
    ["状态 Status", el("span", { class: `status status-${c.status}`, text: statusLabel(c.status) })],
    ["类别 Category", `${c.category} ${c.category_name}`],
    ["网格 Grid", `${c.grid} · 社区 ${c.community} · 街道 ${c.street}`],
    ["责任方 Accountable", c.accountable || "—"],
    ["承办 Assignee", [c.unit && `单位 ${c.unit}`, c.worker && `网格员 ${c.worker}`].filter(Boolean).join(" · ") || "—"],
    [
      "时限 Deadline",
      el(
        "span",
        {},
        el("span", { class: `light ${light}`, title: light, "data-light": light }),
        ` ${when(c.deadline)}`,
        c.overdue ? el("span", { class: "tag overdue", text: " 超期 overdue" }) : null,
        c.escalation_level ? el("span", { class: "tag escalated", text: ` 督办 ${c.escalation_level}` }) : null,
      ),
    ],
    ["描述 Description", c.description || "—"],
    ["来源 Source", c.source],
    ["上报 Reported", when(c.reported_at)],
    ["结案 Closed", when(c.closed_at)],
    ["返工 / 退单 Rework / returns", `${c.rework_count} / ${c.return_count}`],
  ];
  dl.replaceChildren(...rows.flatMap(([label, value]) => [el("dt", { text: label }), el("dd", {}, value)]));
  root.dataset.status = c.status;
  root.dataset.caseId = c.case_id;
  root.dataset.light = light;
  document.getElementById("case-title").textContent = `${c.short_id} · ${statusLabel(c.status)}`;
}

// ---- actions -------------------------------------------------------------------------------------------

let schemaPromise = null;

/** The request bodies' JSON schemas (the OpenAPI document): each field's type, and which fields a body takes. */
function openapi() {
  if (!schemaPromise) schemaPromise = api("/openapi.json").catch(() => null);
  return schemaPromise;
}

function bodySchema(doc, action) {
  const operation = doc?.paths?.[`/v1/cases/{case_id}/${action}`]?.post;
  const ref = operation?.requestBody?.content?.["application/json"]?.schema?.$ref;
  if (!ref) return null;
  return ref.split("/").slice(1).reduce((node, key) => node?.[key], doc) || null;
}

/** A property's own type: the non-null branch of `anyOf`, with its format. */
function typeOf(property) {
  if (!property) return { type: "string" };
  const branch = (property.anyOf || []).find((p) => p.type !== "null");
  return branch || property;
}

function input(name, property, required, defaults) {
  const type = typeOf(property);
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  let control;
  if (type.type === "boolean") {
    control = el(
      "select",
      { name, id, required, "data-type": "boolean" },
      el("option", { value: "", text: "请选择 Choose" }),
      el("option", { value: "true", text: "是 Yes" }),
      el("option", { value: "false", text: "否 No" }),
    );
  } else if (type.type === "integer" || type.type === "number") {
    control = el("input", { name, id, type: "number", step: type.type === "integer" ? "1" : "any", required });
    control.dataset.type = type.type;
  } else if (type.type === "array") {
    control = el("input", { name, id, type: "text", required, "data-type": "array" });
  } else if (type.format === "date-time") {
    control = el("input", { name, id, type: "datetime-local", required, "data-type": "date-time" });
  } else if (LONG_TEXT.has(name)) {
    control = el("textarea", { name, id, required, rows: "2" });
  } else {
    control = el("input", { name, id, type: "text", required });
  }
  if (defaults[name] !== undefined && defaults[name] !== "") control.value = defaults[name];
  const label = el("label", { for: id, text: `${FIELDS[name] || name}${required ? " *" : ""}` });
  const hint = HINTS[name] ? el("small", { class: "muted", text: ` ${HINTS[name]}` }) : null;
  return el("div", { class: "field" }, label, hint, control);
}

/** A datetime-local value ("2026-11-23T09:30") as ISO 8601 with the browser's UTC offset. */
function withOffset(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  const pad = (n) => String(n).padStart(2, "0");
  return `${value.length === 16 ? `${value}:00` : value}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function bodyOf(form) {
  const body = { command_id: commandId(form.dataset.action) };
  for (const control of form.querySelectorAll("[name]")) {
    const raw = control.value.trim();
    if (raw === "") continue; // an optional field left empty takes the command's default
    const type = control.dataset.type;
    if (type === "boolean") body[control.name] = raw === "true";
    else if (type === "integer" || type === "number") body[control.name] = Number(raw);
    else if (type === "array") body[control.name] = raw.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
    else if (type === "date-time") body[control.name] = withOffset(raw);
    else body[control.name] = raw;
  }
  return body;
}

function actionForm(action, fields, schema, c) {
  const properties = schema?.properties || {};
  // The API names no grid's staff: the case's present unit and worker are the defaults of a (re)dispatch.
  const defaults =
    action === "dispatch" || action === "reassign"
      ? { unit: c.unit, worker: c.worker }
      : action === "escalate"
        ? { level: String((c.escalation_level || 0) + 1) }
        : {};
  const names = Object.keys(fields).filter((name) => !HIDDEN.has(name) && (!schema || name in properties));
  // Free text (the reason) last, under the fields it explains.
  names.sort((a, b) => Number(LONG_TEXT.has(a)) - Number(LONG_TEXT.has(b)));
  const form = el(
    "form",
    { "data-action": action, class: "action" },
    el("h3", { text: actionLabel(action) }),
    ...names.map((name) => input(name, properties[name], fields[name] === "required", defaults)),
    el("button", { type: "submit", text: `提交 ${actionLabel(action)}` }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(form, c.case_id);
  });
  return form;
}

/** A body the console can fill: every required field of the command is one a request body takes. */
function fillable(fields, schema) {
  if (!schema) return true;
  const properties = schema.properties || {};
  return Object.entries(fields).every(([name, need]) => need !== "required" || name === "case_id" || name in properties);
}

async function actions(c, allowed) {
  const panel = document.getElementById("actions");
  const [listed, doc] = await Promise.all([api("/v1/commands"), openapi()]);
  const commands = listed.commands || {};
  const forms = [];
  for (const action of allowed) {
    const fields = commands[action];
    if (!fields) continue; // the caller's role may not issue it
    const schema = doc ? bodySchema(doc, action) : null;
    if (doc && !schema) continue; // not a case command over HTTP
    if (!fillable(fields, schema)) continue; // only a policy can issue it (warn_deadline)
    forms.push(actionForm(action, fields, schema, c));
  }
  if (forms.length) panel.replaceChildren(...forms);
  else panel.replaceChildren(el("p", { class: "muted", text: "此刻无可执行的操作。Nothing you may do to this case now." }));
}

async function submit(form, caseId) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  showError(errorEl, null);
  noticeEl.textContent = "";
  try {
    const answer = await api(`/v1/cases/${encodeURIComponent(caseId)}/${form.dataset.action}`, { body: bodyOf(form) });
    const events = (answer.events || []).join(", ") || "—";
    const policies = (answer.policies || []).map((p) => `${p.event} (${p.actor})`).join(", ");
    noticeEl.textContent = `已提交 Done: ${actionLabel(form.dataset.action)} → ${events}${policies ? ` · ${policies}` : ""}`;
    await load(answer.position);
  } catch (error) {
    showError(errorEl, error);
  } finally {
    button.disabled = false;
  }
}

// ---- trace ---------------------------------------------------------------------------------------------

function step(s) {
  const actor = s.actor || {};
  const who = actor.policy ? `${actor.id} (策略 policy ${actor.policy} v${actor.policy_version})` : actor.id;
  const move = s.state_before
    ? `${statusLabel(s.state_before)} → ${statusLabel(s.state_after)}`
    : statusLabel(s.state_after);
  const tags = [];
  if (s.deadline_status === "overdue") tags.push(el("span", { class: "tag overdue", text: "超期 overdue" }));
  else if (s.deadline_status === "yellow") tags.push(el("span", { class: "tag yellow", text: "黄灯 yellow" }));
  if (s.late_upload) tags.push(el("span", { class: "tag", text: "补报 late upload" }));
  if (s.clock_paused) tags.push(el("span", { class: "tag", text: "计时暂停 clock paused" }));
  return el(
    "div",
    { class: "step", "data-action": s.action, "data-event": s.event_type, "data-version": String(s.version) },
    el(
      "div",
      { class: "step-head" },
      el("strong", { class: "what", text: `${s.action_name || ""} ${s.action}` }),
      " · ",
      el("span", { class: "when", text: when(s.occurred_at) }),
      " · ",
      el("span", { class: "who", text: who }),
      " ",
      ...tags,
    ),
    el("div", { class: "move muted", text: `${move} · 责任方 ${s.accountable || "—"}` }),
    s.why ? el("div", { class: "why", text: `理由 Why: ${s.why}` }) : null,
    el("div", {
      class: "time muted",
      text: `停留 Time in state: ${duration(s.elapsed_seconds)} (工作时间 working ${duration(s.working_seconds)})`,
    }),
  );
}

async function trace(caseId, position) {
  const traceEl = document.getElementById("trace");
  const traceError = document.getElementById("trace-error");
  const totals = document.getElementById("totals");
  try {
    const body = await api(`/v1/cases/${encodeURIComponent(caseId)}/trace`, { query: { position } });
    showError(traceError, null);
    traceEl.replaceChildren(...body.steps.map(step));
    totals.tBodies[0].replaceChildren(
      ...body.totals.map((t) =>
        el(
          "tr",
          { "data-state": t.state },
          el("td", { text: `${t.state_name} ${t.state}${t.ongoing ? " (进行中 ongoing)" : ""}` }),
          el("td", { text: String(t.entries) }),
          el("td", { text: duration(t.elapsed_seconds) }),
          el("td", { text: duration(t.working_seconds) }),
          el("td", { text: t.accountable.join(", ") || "—" }),
        ),
      ),
    );
    totals.hidden = false;
    exportLink(caseId);
  } catch (error) {
    traceEl.replaceChildren();
    totals.hidden = true;
    showError(traceError, error); // e.g. an analyst reads no traces
  }
}

/** The HTML export needs the token too: fetched with it, offered as a blob URL. */
async function exportLink(caseId) {
  const link = document.getElementById("trace-export");
  try {
    const href = await apiBlob(`/v1/cases/${encodeURIComponent(caseId)}/trace`, {
      query: { format: "html" },
      headers: { Accept: "text/html" },
    });
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = href;
    link.hidden = false;
  } catch {
    link.hidden = true;
  }
}

// ---- the page ------------------------------------------------------------------------------------------

async function load(position) {
  let detail;
  try {
    detail = await api(`/v1/cases/${encodeURIComponent(requested)}`, { query: { position } });
  } catch (error) {
    showError(errorEl, error);
    document.getElementById("details").replaceChildren();
    document.getElementById("actions").replaceChildren();
    return;
  }
  const c = detail.case;
  details(c);
  await Promise.all([
    actions(c, detail.allowed_actions || []).catch((error) => showError(errorEl, error)),
    trace(c.case_id, position),
  ]);
  loads += 1;
  document.body.dataset.refreshed = String(loads);
}

if (getToken()) load(null);
