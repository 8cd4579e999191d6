// 网格地图: the grids' GeoJSON boundaries (from the division tree) projected onto an SVG, coloured by load.
import { PREFIX, api, getToken, showError, whoami } from "./api.js";

const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace name, not a resource: nothing is fetched
const WIDTH = 960;
const PAD = 12;
const PALETTES = {
  open: ["#e8f1fb", "#08306b"],
  overdue: ["#fdecea", "#99000d"],
};
const EMPTY = "#eef1f4";

const svg = document.getElementById("map");
const measure = document.getElementById("measure");
const error = document.getElementById("error");
const legend = document.getElementById("legend");
const busiest = document.getElementById("busiest");
const note = document.getElementById("map-note");

let grids = [];

/** The rings of a GeoJSON geometry (Polygon or MultiPolygon), each a list of [lon, lat]. */
export function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

/** An equirectangular fit of the bounding box of `rings` into the SVG's width (x scaled by cos of the mid latitude). */
export function projection(rings) {
  let [west, south, east, north] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const ring of rings) {
    for (const [lon, lat] of ring) {
      west = Math.min(west, lon); east = Math.max(east, lon);
      south = Math.min(south, lat); north = Math.max(north, lat);
    }
  }
  const kx = Math.cos(((south + north) / 2) * (Math.PI / 180));
  const spanX = Math.max((east - west) * kx, 1e-9);
  const spanY = Math.max(north - south, 1e-9);
  const scale = (WIDTH - 2 * PAD) / spanX;
  const height = Math.round(spanY * scale + 2 * PAD);
  return {
    width: WIDTH,
    height,
    point: ([lon, lat]) => [PAD + (lon - west) * kx * scale, PAD + (north - lat) * scale],
  };
}

function pathOf(rings, point) {
  return rings
    .map((ring) => ring.map((coord, i) => {
      const [x, y] = point(coord);
      return `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    }).join("") + "Z")
    .join("");
}

function mix(from, to, t) {
  const parse = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const [a, b] = [parse(from), parse(to)];
  return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(",")})`;
}

function colour(value, max, palette) {
  if (!value) return EMPTY;
  return mix(palette[0], palette[1], 0.15 + 0.85 * Math.sqrt(value / Math.max(max, 1)));
}

/** Whether `division` lies inside `jurisdiction` (itself or any ancestor in the tree). */
function inside(division, jurisdiction, byCode) {
  for (let at = division; at; at = byCode.get(at.parent)) {
    if (at.code === jurisdiction) return true;
    if (at.parent === at.code) break;
  }
  return false;
}

function render() {
  const key = measure.value;
  const palette = PALETTES[key];
  const max = Math.max(0, ...grids.map((g) => g[key]));
  for (const path of svg.querySelectorAll("path[data-grid]")) {
    const value = Number(path.dataset[key]);
    path.setAttribute("fill", colour(value, max, palette));
  }
  legend.replaceChildren(
    ...[0, Math.ceil(max / 2), max].map((value) => {
      const row = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(value, max, palette);
      row.append(swatch, `${value} 件`);
      return row;
    }),
  );
  const top = [...grids].filter((g) => g[key] > 0).sort((a, b) => b[key] - a[key] || a.code.localeCompare(b.code));
  busiest.replaceChildren(
    ...top.slice(0, 10).map((g) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `${PREFIX}/?grid=${encodeURIComponent(g.code)}`;
      link.textContent = g.name;
      li.append(link, ` ${g[key]}`);
      return li;
    }),
  );
}

function draw(shown) {
  const rings = shown.flatMap((g) => g.rings);
  svg.replaceChildren();
  if (!rings.length) {
    note.textContent = "辖区内没有带边界的网格 No grid with a boundary in your jurisdiction";
    return;
  }
  const { width, height, point } = projection(rings);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (const grid of shown) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", pathOf(grid.rings, point));
    path.setAttribute("fill-rule", "evenodd");
    path.dataset.grid = grid.code;
    path.dataset.open = String(grid.open);
    path.dataset.overdue = String(grid.overdue);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${grid.name} ${grid.code}\n在办 open ${grid.open} · 超期 overdue ${grid.overdue}`;
    path.append(title);
    path.addEventListener("click", () => location.assign(`${PREFIX}/?grid=${encodeURIComponent(grid.code)}`));
    svg.append(path);
  }
  note.textContent = `${shown.length} 个网格 grids`;
}

async function load() {
  const [me, tree, loads] = await Promise.all([
    whoami(),
    api("/v1/divisions"),
    api("/v1/board/grids"),
  ]);
  const byCode = new Map(tree.divisions.map((d) => [d.code, d]));
  const load = new Map(loads.grids.map((g) => [g.grid, g]));
  grids = tree.divisions
    .filter((d) => d.level === "grid" && !d.retired && d.boundary && inside(d, me.jurisdiction, byCode))
    .map((d) => {
      let rings = [];
      try {
        rings = ringsOf(JSON.parse(d.boundary));
      } catch {
        rings = [];
      }
      const found = load.get(d.code);
      return { code: d.code, name: d.name, rings, open: found ? found.open : 0, overdue: found ? found.overdue : 0 };
    })
    .filter((g) => g.rings.length);
  draw(grids);
  render();
  document.body.dataset.refreshed = "1";
}

measure.addEventListener("change", render);

if (getToken()) load().catch((problem) => showError(error, problem));
