// gridloop console: the KPI page (考核) — one level's ranking for a period, and the report's three charts.
import { api, apiBlob, getToken, showError } from "./api.js";

const ZONE = "Asia/Shanghai";
const CHARTS = ["ranking", "trend", "overdue"];

const form = document.getElementById("kpi-form");
const errorEl = document.getElementById("error");
const table = document.getElementById("kpi");
const caption = document.getElementById("kpi-caption");
let loads = 0;

function cell(text, attrs = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  for (const [key, value] of Object.entries(attrs)) td.setAttribute(key, value);
  return td;
}

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`;
}

/** This month where the server stands (its clock may be a simulated one), as the API's period text. */
async function currentMonth() {
  let now = new Date();
  try {
    const summary = await api("/v1/board/summary", { query: { top: 1 } });
    if (summary.now) now = new Date(summary.now);
  } catch {
    // a role without the board: the browser's clock
  }
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: ZONE, year: "numeric", month: "2-digit" }).formatToParts(
    now,
  );
  const part = (type) => parts.find((p) => p.type === type)?.value;
  return `${part("year")}-${part("month")}`;
}

function render(report) {
  const rates = report.rates || [];
  const head = document.createElement("tr");
  for (const label of ["名次 Rank", "代码 Code", "名称 Name", "得分 Score", "等级 Grade"]) {
    const th = document.createElement("th");
    th.textContent = label;
    head.append(th);
  }
  for (const rate of rates) {
    const th = document.createElement("th");
    th.textContent = rate.label;
    th.title = rate.key;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  const rows = (report.rows || []).map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.code = row.code;
    tr.append(
      cell(String(row.rank)),
      cell(row.code),
      cell(row.name || ""),
      cell(row.score === null || row.score === undefined ? "—" : row.score.toFixed(1)),
      cell(row.grade || ""),
      ...rates.map((rate) => cell(percent(row.rates?.[rate.key]), { "data-rate": rate.key })),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.append(cell("本期无数据 No activity in this period", { colspan: String(5 + rates.length), class: "muted" }));
    rows.push(tr);
  }
  table.tBodies[0].replaceChildren(...rows);
  const period = report.period || {};
  caption.textContent = `${report.level} · ${period.label || ""} (${period.start || ""} – ${period.end || ""}) · ${report.within || ""}`;
}

async function charts(query) {
  await Promise.all(
    CHARTS.map(async (name) => {
      const img = document.querySelector(`img.chart[data-chart="${name}"]`);
      if (!img) return;
      try {
        const url = await apiBlob(`/v1/reports/charts/${name}.svg`, { query });
        if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
        img.src = url;
        img.hidden = false;
      } catch (error) {
        img.removeAttribute("src");
        img.hidden = true;
        showError(errorEl, error);
      }
    }),
  );
}

async function show() {
  const level = form.elements.level.value;
  const period = form.elements.period.value.trim();
  const query = { level, period };
  history.replaceState(null, "", `${location.pathname}?${new URLSearchParams(query)}`);
  showError(errorEl, null);
  try {
    render(await api("/v1/reports/kpi", { query }));
  } catch (error) {
    table.tBodies[0].replaceChildren();
    caption.textContent = "";
    showError(errorEl, error);
    loads += 1;
    document.body.dataset.refreshed = String(loads);
    return;
  }
  await charts(query);
  loads += 1;
  document.body.dataset.refreshed = String(loads);
}

async function start() {
  const params = new URLSearchParams(location.search);
  if (params.get("level")) form.elements.level.value = params.get("level");
  form.elements.period.value = params.get("period") || (await currentMonth());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    show();
  });
  form.elements.level.addEventListener("change", () => show());
  await show();
}

if (getToken()) start();
