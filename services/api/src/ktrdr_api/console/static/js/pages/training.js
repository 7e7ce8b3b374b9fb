// Training: start a run (the CLI's spec), live epoch curves, metrics against the majority
// baseline and buy-and-hold, the confusion matrix, the equity curve; the stored models.
import { get, jobWhenAccepted, post, request, stream } from "../api.js";
import { TIMEFRAMES, badge, bytes, card, clear, errorBox, h, jobLink, kv, num, paramsView, setLive, table, utc } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";
const ENDED = new Set(["completed", "failed", "cancelled"]);
const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(1)} %`);

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// A small line plot: series = [{name, colour, points: [[x, y], ...]}].
export function linePlot(series, { id, xLabel = "", yFormat = (y) => y.toFixed(3) } = {}) {
  const W = 640, H = 240, L = 56, R = 12, T = 12, B = 28;
  const all = series.flatMap((s) => s.points);
  const plot = svg("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  if (id) plot.id = id;
  plot.dataset.points = String(all.length);
  if (!all.length) return plot;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) x1 = x0 + 1;
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  plot.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const y of [y0, (y0 + y1) / 2, y1]) plot.append(svg("text", { x: 4, y: Y(y) + 4 }, yFormat(y)));
  plot.append(svg("text", { x: L, y: H - 8 }, String(xLabel === "time" ? utc(x0 * 1000).slice(0, 10) : x0)), svg("text", { x: W - R - 80, y: H - 8 }, String(xLabel === "time" ? utc(x1 * 1000).slice(0, 10) : x1)));
  let legendX = L + 8;
  for (const s of series) {
    if (!s.points.length) continue;
    plot.append(svg("polyline", { fill: "none", stroke: s.colour, "stroke-width": 2, "vector-effect": "non-scaling-stroke", points: s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ") }));
    plot.append(svg("text", { x: legendX, y: T + 10, fill: s.colour, style: `fill:${s.colour}` }, s.name));
    legendX += s.name.length * 7 + 18;
  }
  return plot;
}

export async function render(main, route, ctx) {
  if (route.parts[0]) return renderRun(main, route.parts[0], ctx);
  const models = h("div", { id: "models" }, h("p", { class: "muted" }, "loading models…"));
  const runs = h("div", { id: "runs" });
  main.append(h("h1", {}, "Training"), h("div", { class: "row" }, trainForm(ctx, route.query), card("Runs", runs)), card("Models", models));
  try {
    const { jobs } = await get("/api/v1/jobs?kind=training&limit=50");
    clear(runs, table([
      { title: "run", cell: (j) => h("a", { href: `#/training/${j.job_id}`, class: "mono" }, j.job_id.slice(0, 8)) },
      { title: "dataset", cell: (j) => `${j.symbol || "–"} ${j.timeframe || ""}` },
      { title: "status", cell: (j) => badge(j.status) },
      { title: "created", cell: (j) => utc(j.created) },
    ], jobs, { empty: "no runs yet" }));
  } catch (e) { clear(runs, errorBox(e)); }
  try {
    const list = (await get("/api/v1/models")).models;
    clear(models, h("div", { class: "scroll" }, modelTable(list)));
  } catch (e) { clear(models, errorBox(e)); }
  ctx.ready();
  return undefined;
}

function modelTable(list) {
  return table([
    { title: "model", cell: (m) => h("span", { class: "mono" }, m.model_id.slice(0, 12)) },
    { title: "run", cell: (m) => h("a", { href: `#/training/${m.job_id}`, class: "mono" }, m.job_id.slice(0, 8)) },
    { title: "symbols", cell: (m) => `${m.symbols.join(", ")} ${m.timeframe}` },
    { title: "created", cell: (m) => utc(m.created) },
    { title: "device", cell: (m) => m.device },
    { title: "accuracy", class: "num", cell: (m) => pct(m.metrics?.accuracy) },
    { title: "baseline", class: "num", cell: (m) => pct(m.metrics?.majority_baseline_accuracy) },
    { title: "data fingerprint", cell: (m) => h("span", { class: "mono", title: m.data_sha256 || "" }, (m.data_sha256 || "–").slice(0, 12)) },
    { title: "size", class: "num", cell: (m) => bytes(m.size_bytes) },
    { title: "", cell: (m) => h("button", { type: "button", "data-download": m.model_id, onclick: () => download(m.model_id) }, "download") },
  ], list, { empty: "no models yet" });
}

// The download needs the key header, so it is fetched and handed over as a blob: URL.
async function download(modelId) {
  const reply = await request(`/api/v1/models/${modelId}/download`, { accept: "application/zip" });
  if (!reply.ok) { alert(`download failed: HTTP ${reply.status}`); return; }
  const url = URL.createObjectURL(await reply.blob());
  const a = h("a", { href: url, download: `${modelId}.zip` });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function trainForm(ctx, query) {
  const symbols = h("input", { name: "symbols", required: true, placeholder: "AAPL or AAPL, MSFT", value: query.get("symbols") || "" });
  const timeframe = h("select", { name: "timeframe" }, TIMEFRAMES.map((t) => h("option", { value: t, selected: t === "1h" }, t)));
  const start = h("input", { name: "start", type: "date" });
  const end = h("input", { name: "end", type: "date" });
  const epochs = h("input", { name: "epochs", type: "number", min: 1, max: 1000, value: 10 });
  const model = h("select", { name: "model" }, h("option", { value: "mlp" }, "MLP"), h("option", { value: "lstm" }, "LSTM"));
  const label = h("select", { name: "label" }, h("option", { value: "forward_return" }, "forward return"), h("option", { value: "zigzag" }, "zigzag"));
  const seed = h("input", { name: "seed", type: "number", placeholder: "default" });
  const submit = h("button", { type: "submit", class: "primary", id: "train-submit" }, "Train");
  const out = h("div", { id: "train-result" });
  const form = h("form", { class: "stack", id: "train-form" },
    h("label", {}, "symbols"), symbols, h("label", {}, "timeframe"), timeframe, h("label", {}, "start (UTC)"), start,
    h("label", {}, "end (UTC)"), end, h("label", {}, "epochs"), epochs, h("label", {}, "model"), model,
    h("label", {}, "label"), label, h("label", {}, "seed"), seed, h("div", { class: "full" }, submit), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { symbols: symbols.value.split(/[\s,]+/).filter(Boolean).map((s) => s.toUpperCase()), timeframe: timeframe.value, epochs: Number(epochs.value), model: { kind: model.value }, label: { kind: label.value } };
    if (start.value) body.start = `${start.value}T00:00:00Z`;
    if (end.value) body.end = `${end.value}T00:00:00Z`;
    if (seed.value) body.seed = Number(seed.value);
    submit.disabled = true;
    try {
      const run = await post("/api/v1/training/runs", body);
      ctx.go(`#/training/${run.job_id}`);
    } catch (e) { clear(out, errorBox(e)); } finally { submit.disabled = false; }
  });
  return card("Train a model", form);
}

async function renderRun(main, jobId, ctx) {
  const status = h("span", { id: "run-status" });
  const curves = h("div", {}), metrics = h("div", { id: "metrics" }), confusion = h("div", { id: "confusion" }), equity = h("div", { id: "equity" });
  const facts = h("div", {});
  main.append(h("h1", {}, h("a", { href: "#/training" }, "Training"), " / ", jobLink(jobId), status),
    h("div", { class: "row" }, card("Run", facts), card("Epochs", curves)),
    h("div", { class: "row" }, card("Test metrics", metrics), card("Confusion matrix (test)", confusion)),
    card("Equity on the test period", equity));
  const epochs = [];
  let job = null;
  const c = () => getComputedStyle(document.documentElement);
  const draw = () => {
    const accent = c().getPropertyValue("--accent").trim(), warn = c().getPropertyValue("--warn").trim(), ok = c().getPropertyValue("--ok").trim();
    clear(curves,
      linePlot([
        { name: "train loss", colour: accent, points: epochs.map((e) => [e.epoch, e.train_loss]) },
        { name: "validation loss", colour: warn, points: epochs.map((e) => [e.epoch, e.val_loss]) },
      ], { id: "loss-curve" }),
      linePlot([{ name: "validation accuracy", colour: ok, points: epochs.map((e) => [e.epoch, e.val_accuracy]) }], { id: "accuracy-curve", yFormat: pct }));
    if (!job) return;
    clear(status, badge(job.status));
    status.dataset.status = job.status;
    const last = epochs[epochs.length - 1];
    clear(facts, kv([
      ["status", job.status], ["params", paramsView(job.params)],
      ["epochs", last ? `${last.epoch} of ${last.epochs}` : "–"], ["device", last?.device || job.result?.device || "–"],
      ["samples/s", last ? num(Math.round(last.samples_per_s)) : "–"],
      job.result?.model_id && ["model", h("span", { class: "mono" }, job.result.model_id)],
      job.error && ["error", h("span", { class: "error" }, `${job.error.code}: ${job.error.message}`)],
    ]));
    const m = job.result?.metrics;
    if (m) drawMetrics(m, metrics, confusion, equity, { accent, warn });
  };
  const waiting = h("p", { class: "notice", id: "run-waiting", hidden: true }, "waiting for the trainer to accept the run…");
  main.append(waiting);
  try { job = await jobWhenAccepted(`/api/v1/training/runs/${jobId}`, () => { waiting.hidden = false; }); } catch (e) { main.append(errorBox(e)); ctx.ready(); return undefined; }
  waiting.remove();
  draw();
  let refetch = null;
  const feed = stream(`/api/v1/jobs/${jobId}/events`, (type, data) => {
    if (type === "epoch_completed") epochs.push(data);
    if (ENDED.has(type)) feed.stop();
    clearTimeout(refetch);
    refetch = setTimeout(async () => { job = await get(`/api/v1/training/runs/${jobId}`).catch(() => job); draw(); }, 200);
    draw();
  }, { onState: setLive });
  ctx.ready();
  return () => { feed.stop(); clearTimeout(refetch); setLive(""); };
}

function drawMetrics(m, metrics, confusion, equity, colours) {
  const bt = m.backtest || {};
  const s = bt.strategy || {}, b = bt.buy_and_hold || {};
  clear(metrics, table([
    { title: "", cell: (r) => r[0] }, { title: "model", class: "num", cell: (r) => r[1] }, { title: "baseline", class: "num", cell: (r) => r[2] },
  ], [
    ["accuracy (vs always " + (m.majority_class || "majority") + ")", pct(m.accuracy), pct(m.majority_baseline_accuracy)],
    ["macro F1", m.macro_f1?.toFixed(3) ?? "–", ""],
    ["total return (vs buy and hold)", pct(s.total_return), pct(b.total_return)],
    ["Sharpe", s.sharpe?.toFixed(2) ?? "–", b.sharpe?.toFixed(2) ?? "–"],
    ["max drawdown", pct(s.max_drawdown), pct(b.max_drawdown)],
    ["trades", num(s.trades), ""],
    ["test samples", num(m.samples), ""],
  ]), h("p", { class: "muted" }, `backtest costs: ${bt.costs || "none"}`));
  const classes = m.classes || [];
  const matrix = m.confusion_matrix || [];
  clear(confusion, h("table", { class: "grid matrix", id: "confusion-matrix" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), classes.map((c) => h("th", {}, c)))),
    h("tbody", {}, matrix.map((row, i) => h("tr", {}, h("th", {}, classes[i] || i), row.map((v, j) => h("td", { style: i === j ? { fontWeight: 700 } : {} }, num(v))))))));
  const curve = m.equity_curve;
  if (curve?.ts?.length) {
    const t = curve.ts.map((x) => Date.parse(x) / 1000);
    clear(equity, linePlot([
      { name: "model signals", colour: colours.accent, points: t.map((x, i) => [x, curve.strategy[i]]) },
      { name: "buy and hold", colour: colours.warn, points: t.map((x, i) => [x, curve.buy_and_hold[i]]) },
    ], { id: "equity-curve", xLabel: "time", yFormat: (y) => y.toFixed(3) }));
  } else clear(equity, h("p", { class: "muted" }, "no equity curve in this run's metrics"));
}
