// Leaderboard behaviour: sort tables by header (mouse or keyboard: headers are buttons)
// and filter rows with the selects. Plain DOM, no libraries, no network (works from file://).
//
// Each table is a list of entries {values, tr}. Sorting and filtering work on the values;
// only the first PAGE matching rows are attached, because laying out 10,000 table rows
// takes the browser seconds. The cell table's rows are built lazily from embedded JSON.
"use strict";

const PAGE = 1000;
const DASH = "\u2013";
const collator = new Intl.Collator("en", { numeric: true });
const tables = [];

// Shared with render.py's `_fmt`: 3 decimals, an en dash where there is no number.
function format(v, kind) {
  if (v === null) return DASH;
  return kind === "dec3" ? v.toFixed(3) : String(v);
}

function register(el, entries, buildRow) {
  const heads = Array.from(el.tHead.rows[0].cells);
  const t = { el, entries, buildRow, limit: PAGE, cols: heads.map((th) => th.dataset.col) };
  for (const th of heads) {
    th.querySelector("button").addEventListener("click", () => { sort(t, th); draw(t); });
  }
  tables.push(t);
}

// Missing values (null) go last in both directions; text compares numbers inside it as numbers.
function sort(t, th) {
  const i = t.cols.indexOf(th.dataset.col);
  const numeric = th.dataset.type === "num";
  const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  const sign = dir === "ascending" ? 1 : -1;
  t.entries.sort((a, b) => {
    const x = a.values[i], y = b.values[i];
    if (x === null || y === null) return (x === null) - (y === null);
    return sign * (numeric ? x - y : collator.compare(x, y));
  });
  for (const other of th.parentNode.children) other.setAttribute("aria-sort", "none");
  th.setAttribute("aria-sort", dir);
}

// A filter applies to every table that has its column; other tables ignore it.
function draw(t) {
  const tests = Array.from(document.querySelectorAll("select[data-filter]"))
    .filter((s) => s.value !== "")
    .map((s) => [t.cols.indexOf(s.dataset.filter), s.value])
    .filter(([i]) => i >= 0);
  const view = t.entries.filter((e) => tests.every(([i, v]) => String(e.values[i]) === v));
  const frag = document.createDocumentFragment();
  for (const e of view.slice(0, t.limit)) frag.appendChild(e.tr || (e.tr = t.buildRow(e.values)));
  t.el.tBodies[0].replaceChildren(frag);

  const count = document.querySelector(`[data-count-for="${t.el.id}"]`);
  if (!count) return;
  const shown = Math.min(view.length, t.limit);
  count.textContent = shown === t.entries.length ? `${shown} rows.`
    : `Showing ${shown} of ${view.length} matching rows (${t.entries.length} in all). `;
  if (shown < view.length) {
    const more = document.createElement("button");
    more.type = "button";
    more.textContent = "show all (slow for many rows)";
    more.addEventListener("click", () => { t.limit = Infinity; draw(t); });
    count.appendChild(more);
  }
}

// Server-rendered tables (the summary): values are read from the cells once.
function fromDom(el) {
  const entries = Array.from(el.tBodies[0].rows, (tr) => ({
    tr,
    values: Array.from(tr.cells, (td) => {
      if (!td.classList.contains("num")) return td.textContent;
      return td.dataset.v === undefined ? null : Number(td.dataset.v);
    }),
  }));
  register(el, entries, null);
}

// The cell table: rows as arrays with interned strings; textContent keeps them inert.
function fromJson(el, src) {
  const data = JSON.parse(src.textContent);
  const text = data.cols.map((c) => c.kind === "text");
  const status = data.cols.findIndex((c) => c.key === "status");
  const flags = data.cols.findIndex((c) => c.key === "flags");
  const entries = data.rows.map((row) => ({
    tr: null,
    values: row.map((v, i) => (text[i] ? data.strings[v] : v)),
  }));
  register(el, entries, (values) => {
    const tr = document.createElement("tr");
    values.forEach((v, i) => {
      const td = tr.insertCell();
      if (text[i]) {
        td.textContent = v;
      } else {
        td.className = "num";
        td.textContent = format(v, data.cols[i].kind);
      }
    });
    if (values[status] === "error" || values[status] === "skipped") tr.classList.add("st-" + values[status]);
    if (values[flags] !== "") tr.classList.add("flagged");
    return tr;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("summary-table");
  if (summary) fromDom(summary);
  const cells = document.getElementById("cells");
  const src = document.getElementById("cells-data");
  if (cells && src) fromJson(cells, src);

  const form = document.querySelector("form.filters");
  const redraw = () => tables.forEach(draw);
  form.addEventListener("change", redraw);
  form.addEventListener("reset", () => setTimeout(redraw));
  form.addEventListener("submit", (e) => e.preventDefault());
  redraw();
});
