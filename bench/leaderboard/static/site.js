// Site behaviour: sort tables by header (mouse or keyboard: headers are buttons), filter
// rows with the selects, hide per-eps columns with the eps filter. Plain DOM, no
// libraries, no network (works from file://).
//
// Each table is a list of entries {values, tr}. Sorting and filtering work on the values;
// only the first PAGE matching rows are attached, because laying out 10,000 table rows
// takes the browser seconds. JSON tables build their rows lazily, with textContent only,
// so a name from the results can never become markup.
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
  const t = { el, entries, buildRow, limit: PAGE, cols: heads.map((th) => th.dataset.col), heads };
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

// A filter applies to every table that has its column; an empty filter takes the table's
// default for that column if it declares one (the leaderboard: attack = "all (worst)").
// The eps filter also hides per-eps columns (headers with data-eps) of other budgets.
function draw(t) {
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  const tests = selects
    .map((s) => [t.cols.indexOf(s.dataset.filter), s.value || t.el.dataset["default" + cap(s.dataset.filter)] || ""])
    .filter(([i, v]) => i >= 0 && v !== "");
  const view = t.entries.filter((e) => tests.every(([i, v]) => String(e.values[i]) === v));
  const eps = selects.find((s) => s.dataset.filter === "eps");
  const hide = t.heads.map((th) => eps !== undefined && eps.value !== "" && th.dataset.eps !== undefined && th.dataset.eps !== eps.value);
  t.heads.forEach((th, i) => { th.hidden = hide[i]; });
  const frag = document.createDocumentFragment();
  for (const e of view.slice(0, t.limit)) {
    if (!e.tr) e.tr = t.buildRow(e.values, e.cls);
    Array.from(e.tr.cells).forEach((td, i) => { td.hidden = hide[i]; });
    frag.appendChild(e.tr);
  }
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

function cap(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

// Server-rendered tables: values are read from the cells once (data-v holds numbers).
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

// An estimate [value, lo, hi(, flagged)]: the value, its interval, and a mark if flagged.
function fillEstimate(td, v) {
  td.textContent = v === null ? DASH : v[0].toFixed(3);
  if (v === null) return;
  if (v[1] !== null && v[2] !== null) {
    const s = document.createElement("span");
    s.className = "ci";
    s.textContent = `[${v[1].toFixed(3)}, ${v[2].toFixed(3)}]`;
    td.appendChild(s);
  }
  if (v.length > 3) {
    td.classList.add("flagged-v");
    const w = document.createElement("span");
    w.className = "warn";
    w.title = "a cell behind this number is flagged";
    w.textContent = "\u26a0";
    td.appendChild(w);
  }
}

// JSON tables: rows as arrays with interned strings (see tables.payload).
function fromJson(el, src) {
  const data = JSON.parse(src.textContent);
  const kinds = data.cols.map((c) => c.kind);
  const entries = data.rows.map((row, r) => ({
    tr: null,
    cls: data.classes.length ? data.classes[r] : "",
    raw: row,
    values: row.map((v, i) => (kinds[i] === "text" ? data.strings[v] : kinds[i] === "est" ? (v === null ? null : v[0]) : v)),
  }));
  const byValues = new Map(entries.map((e) => [e.values, e.raw]));
  register(el, entries, (values, cls) => {
    const raw = byValues.get(values);
    const tr = document.createElement("tr");
    values.forEach((v, i) => {
      const td = tr.insertCell();
      const col = data.cols[i];
      if (kinds[i] === "text") {
        const href = col.link && data.hrefs[col.link] ? data.hrefs[col.link][v] : undefined;
        if (href !== undefined) {
          const a = document.createElement("a");
          a.setAttribute("href", href);
          a.textContent = v;
          td.appendChild(a);
        } else {
          td.textContent = v;
        }
        return;
      }
      td.className = "num";
      if (kinds[i] === "est") fillEstimate(td, raw[i]);
      else td.textContent = format(v, kinds[i]);
    });
    if (cls) tr.className = cls;
    return tr;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("table.sortable")) {
    const src = el.dataset.source ? document.getElementById(el.dataset.source) : null;
    if (src) fromJson(el, src);
    else fromDom(el);
  }
  const redraw = () => tables.forEach(draw);
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("change", redraw);
    form.addEventListener("reset", () => setTimeout(redraw));
    form.addEventListener("submit", (e) => e.preventDefault());
  }
  redraw();
});
