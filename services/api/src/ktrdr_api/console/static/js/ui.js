// Small DOM and formatting helpers shared by the pages.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) { el.replaceChildren(...children.flat(Infinity).filter(Boolean)); return el; }

const numberFormat = new Intl.NumberFormat("en-US");
export const num = (n) => (n === null || n === undefined ? "–" : numberFormat.format(n));

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// Timestamps are shown in UTC, as the API gives them (IB's bars are stamped in UTC here).
export function utc(ts, { seconds = false } = {}) {
  if (!ts) return "–";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  const s = d.toISOString().replace("T", " ");
  return (seconds ? s.slice(0, 19) : s.slice(0, 16)) + "Z";
}
export const day = (ts) => (ts ? new Date(ts).toISOString().slice(0, 10) : "–");

export function ago(ts) {
  if (!ts) return "";
  const s = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 0) return `in ${duration(-s)}`;
  return `${duration(s)} ago`;
}

export function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const two = (a, unitA, b, unitB) => (b ? `${a} ${unitA} ${b} ${unitB}` : `${a} ${unitA}`);
  if (s < 3600) return two(Math.floor(s / 60), "min", s % 60, "s");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.floor((s % 3600) / 60), "min");
  return two(Math.floor(s / 86400), "d", Math.floor((s % 86400) / 3600), "h");
}

export function badge(state, text) {
  return h("span", { class: `badge ${state}`, dataset: { state } }, text ?? state);
}

export function table(columns, rows, { empty = "nothing yet", rowAttrs } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.title))));
  const body = h("tbody", {});
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  for (const row of rows) {
    body.append(h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))));
  }
  return h("table", { class: "grid" }, head, body);
}

export function progressBar(fraction, label) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct.toFixed(0), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { class: "fill", style: { width: `${pct}%` } }), h("span", {}, label ?? `${pct.toFixed(0)} %`));
}

export function card(title, ...body) {
  return h("section", { class: "card" }, h("h2", {}, title), ...body);
}

export function errorBox(error) {
  const p = error?.problem || {};
  return h("div", { class: "error-box", role: "alert" },
    h("strong", {}, p.title || "Error"), " ", error?.message || String(error),
    p.code ? h("span", { class: "muted" }, ` (${p.code})`) : null);
}

export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function jobLink(id) { return h("a", { href: `#/jobs/${id}`, class: "mono" }, id.slice(0, 8)); }

// Load a classic script (the vendored chart library) once.
const scripts = new Map();
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const s = h("script", { src });
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.append(s);
    }));
  }
  return scripts.get(src);
}

export function loadStyle(href) {
  if (!document.querySelector(`link[href="${href}"]`)) document.head.append(h("link", { rel: "stylesheet", href }));
}

export const TIMEFRAMES = ["1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"];

export function setLive(state) { const dot = document.getElementById("live"); if (dot) dot.dataset.state = state; }

// A job's parameters: the scalar ones in a line, everything as JSON one click away.
export function paramsView(params) {
  const shown = Object.entries(params || {})
    .filter(([k, v]) => k !== "job_id" && v !== null && v !== "" && (typeof v !== "object" || Array.isArray(v) && v.every((x) => typeof x !== "object")))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`);
  for (const k of ["model", "label"]) if (params?.[k]?.kind) shown.push(`${k}=${params[k].kind}`);
  return h("details", { class: "params" }, h("summary", {}, shown.join("  ") || "none"),
    h("pre", { class: "mono", style: { whiteSpace: "pre-wrap", margin: "4px 0 0" } }, JSON.stringify(params, null, 2)));
}
