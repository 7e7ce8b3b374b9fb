// Chart: candlesticks and volume for a dataset, paged from the API as you pan; gaps and
// quarantined batches marked. The vendored lightweight-charts library draws it (canvas).
import { get, request } from "../api.js";
import { TIMEFRAMES, clear, errorBox, h, loadScript, num, utc } from "../ui.js";

const LIB = "/console/static/vendor/lightweight-charts/lightweight-charts.standalone.production.js";
const PAGE = 50000; // bars per API page
const WINDOW_BARS = 3000; // bars loaded around the end, and per step back while panning
const SECONDS = { "1s": 1, "5s": 5, "15s": 15, "30s": 30, "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400, "1w": 604800 };

function colours() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return { bg: v("--panel"), text: v("--text"), grid: v("--border"), up: v("--ok"), down: v("--bad"), gap: v("--gap"), warn: v("--warn"), muted: v("--muted") };
}

// Every bar in [start, end): a long range is cut into SLICES time slices fetched at once
// (each follows its own cursor; a page holds as many bars as fit in one NATS message).
const SLICES = 4;
async function fetchBars(symbol, timeframe, start, end, onPage = () => {}) {
  const from = start ? Date.parse(start) : NaN, to = end ? Date.parse(end) : NaN;
  const bars = Number.isFinite(from) && Number.isFinite(to) ? (to - from) / 1000 / SECONDS[timeframe] : 0;
  if (bars < 20000) return fetchSlice(symbol, timeframe, start, end, onPage);
  const cuts = Array.from({ length: SLICES + 1 }, (_, i) => iso(Math.round((from + ((to - from) * i) / SLICES) / 1000)));
  const counts = new Array(SLICES).fill(0);
  const parts = await Promise.all(cuts.slice(0, -1).map((cut, i) => fetchSlice(symbol, timeframe, cut, cuts[i + 1],
    (n) => { counts[i] = n; onPage(counts.reduce((a, b) => a + b, 0)); })));
  return parts.reduce((all, part) => concat(all, part));
}

async function fetchSlice(symbol, timeframe, start, end, onPage = () => {}) {
  const out = { time: [], open: [], high: [], low: [], close: [], volume: [] };
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (start) q.set("start", start);
    if (end) q.set("end", end);
    if (cursor) q.set("cursor", cursor);
    const reply = await request(`/api/v1/data/${encodeURIComponent(symbol)}/${timeframe}?${q}`);
    const page = await reply.json();
    if (!reply.ok) throw Object.assign(new Error(page.detail || `HTTP ${reply.status}`), { problem: page });
    for (const b of page.bars) {
      out.time.push(Date.parse(b.ts) / 1000);
      out.open.push(b.open); out.high.push(b.high); out.low.push(b.low); out.close.push(b.close); out.volume.push(b.volume);
    }
    cursor = page.next_cursor;
    onPage(out.time.length);
  } while (cursor);
  return out;
}

function toSeries(bars, c) {
  const candles = new Array(bars.time.length), volume = new Array(bars.time.length);
  for (let i = 0; i < bars.time.length; i += 1) {
    candles[i] = { time: bars.time[i], open: bars.open[i], high: bars.high[i], low: bars.low[i], close: bars.close[i] };
    volume[i] = { time: bars.time[i], value: bars.volume[i], color: bars.close[i] >= bars.open[i] ? `${c.up}66` : `${c.down}66` };
  }
  return { candles, volume };
}

function concat(a, b) {
  const out = {};
  for (const k of Object.keys(a)) out[k] = a[k].concat(b[k]);
  return out;
}

const iso = (seconds) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");

export async function render(main, route, ctx) {
  const q = route.query;
  const datasetSelect = h("select", { id: "chart-dataset" }, h("option", { value: "" }, "choose a dataset"));
  const start = h("input", { type: "date", id: "chart-start", value: q.get("start") || "" });
  const end = h("input", { type: "date", id: "chart-end", value: q.get("end") || "" });
  const draw = h("button", { type: "button", class: "primary", id: "chart-draw" }, "Draw");
  const info = h("span", { class: "muted", id: "chart-info" });
  const box = h("div", { id: "chart-box" });
  const marks = h("div", { id: "chart-marks" });
  main.append(h("h1", {}, "Chart"), h("div", { class: "toolbar" }, datasetSelect, h("label", { class: "muted" }, "from"), start, h("label", { class: "muted" }, "to"), end, draw, info), box, marks);
  const symbol = q.get("symbol"), timeframe = q.get("timeframe");
  // the dataset list fills the picker whenever it comes: the chart does not wait for it
  const listed = get("/api/v1/data").then(({ datasets }) => {
    for (const d of datasets) datasetSelect.append(h("option", { value: `${d.symbol}/${d.timeframe}` }, `${d.symbol} ${d.timeframe} (${num(d.rows)} bars)`));
    if (symbol && timeframe) datasetSelect.value = `${symbol.toUpperCase()}/${timeframe}`;
    return datasets;
  }).catch((e) => { main.append(errorBox(e)); return []; });
  draw.addEventListener("click", () => {
    const [s, tf] = datasetSelect.value.split("/");
    if (!s) return;
    const p = new URLSearchParams({ symbol: s, timeframe: tf });
    if (start.value) p.set("start", start.value);
    if (end.value) p.set("end", end.value);
    ctx.go(`#/chart?${p}`);
  });
  if (!symbol || !timeframe || !TIMEFRAMES.includes(timeframe)) {
    const datasets = await listed;
    box.append(h("p", { class: "muted", style: { padding: "16px" } }, datasets.length ? "Choose a dataset and a range, then Draw." : "No datasets yet: load one on the Data page."));
    ctx.ready();
    return undefined;
  }
  const coverageAsked = get(`/api/v1/data/${encodeURIComponent(symbol)}/${timeframe}/coverage`);
  coverageAsked.catch(() => {}); // awaited below; its error is shown there
  await loadScript(LIB);
  const L = window.LightweightCharts;
  let c = colours();
  const chart = L.createChart(box, {
    autoSize: true,
    layout: { background: { color: c.bg }, textColor: c.text, attributionLogo: true },
    grid: { vertLines: { color: `${c.grid}80` }, horzLines: { color: `${c.grid}80` } },
    timeScale: { timeVisible: SECONDS[timeframe] < 86400, secondsVisible: SECONDS[timeframe] < 60, rightOffset: 5 },
    localization: { timeFormatter: (t) => utc(t * 1000, { seconds: SECONDS[timeframe] < 60 }) },
  });
  const candleSeries = chart.addSeries(L.CandlestickSeries, { upColor: c.up, downColor: c.down, borderVisible: false, wickUpColor: c.up, wickDownColor: c.down });
  const volumeSeries = chart.addSeries(L.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "" });
  volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  const markers = L.createSeriesMarkers(candleSeries, []);
  const onTheme = () => {
    c = colours();
    chart.applyOptions({ layout: { background: { color: c.bg }, textColor: c.text }, grid: { vertLines: { color: `${c.grid}80` }, horzLines: { color: `${c.grid}80` } } });
    candleSeries.applyOptions({ upColor: c.up, downColor: c.down, wickUpColor: c.up, wickDownColor: c.down });
  };
  window.addEventListener("themechange", onTheme);
  const cleanup = () => { window.removeEventListener("themechange", onTheme); chart.remove(); };

  let bars = { time: [], open: [], high: [], low: [], close: [], volume: [] };
  let first = null; // the dataset's first bar (seconds): panning left stops there
  const setAll = () => {
    const s = toSeries(bars, c);
    candleSeries.setData(s.candles);
    volumeSeries.setData(s.volume);
    box.dataset.candles = String(candleSeries.data().length);
  };
  const step = SECONDS[timeframe] * WINDOW_BARS;
  let rangeStart, rangeEnd;
  try {
    const coverage = await coverageAsked;
    first = coverage.first ? Date.parse(coverage.first) / 1000 : null;
    const last = coverage.last ? Date.parse(coverage.last) / 1000 : Date.now() / 1000;
    rangeStart = q.get("start") ? `${q.get("start")}T00:00:00Z` : null;
    rangeEnd = q.get("end") ? `${q.get("end")}T00:00:00Z` : null;
    const explicit = Boolean(rangeStart);
    if (!explicit) rangeStart = iso(Math.max(first ?? last, last - step));
    box.dataset.complete = "false";
    const began = performance.now();
    bars = await fetchBars(symbol, timeframe, rangeStart, rangeEnd, (n) => { info.textContent = `loading… ${num(n)} bars`; });
    setAll();
    box.dataset.complete = "true";
    info.textContent = `${num(bars.time.length)} bars ${bars.time.length ? `${utc(bars.time[0] * 1000)} → ${utc(bars.time[bars.time.length - 1] * 1000)}` : ""} in ${Math.round(performance.now() - began)} ms`;
    if (!explicit && bars.time.length > 300) chart.timeScale().setVisibleLogicalRange({ from: bars.time.length - 300, to: bars.time.length + 5 });
    else chart.timeScale().fitContent();
    ctx.ready(); // the candles are drawn; the marks follow
    await markRanges(symbol, timeframe, rangeStart, rangeEnd, markers, marks, chart, () => bars, c);
    // page older bars in as the view nears the oldest loaded one
    let paging = false;
    chart.timeScale().subscribeVisibleLogicalRangeChange(async (range) => {
      if (explicit || paging || !range || range.from > 50 || !bars.time.length) return;
      const oldest = bars.time[0];
      if (first !== null && oldest <= first) return;
      paging = true;
      try {
        const older = await fetchBars(symbol, timeframe, iso(Math.max(first ?? oldest - step, oldest - step)), iso(oldest));
        if (older.time.length) {
          const visible = chart.timeScale().getVisibleLogicalRange();
          bars = concat(older, bars);
          setAll();
          if (visible) chart.timeScale().setVisibleLogicalRange({ from: visible.from + older.time.length, to: visible.to + older.time.length });
          info.textContent = `${num(bars.time.length)} bars loaded (from ${utc(bars.time[0] * 1000)})`;
        } else first = oldest;
      } catch (e) { marks.prepend(errorBox(e)); }
      finally { paging = false; }
    });
  } catch (e) {
    clear(box, errorBox(e));
  }
  ctx.ready();
  return cleanup;
}

// Gaps (from coverage) and quarantined batches, as markers on the bar before each and a list.
async function markRanges(symbol, timeframe, start, end, markers, list, chart, bars, c) {
  const q = new URLSearchParams();
  if (start) q.set("start", start);
  if (end) q.set("end", end);
  const [coverage, quarantine] = await Promise.all([
    get(`/api/v1/data/${encodeURIComponent(symbol)}/${timeframe}/coverage?${q}`),
    get(`/api/v1/quarantine?symbol=${encodeURIComponent(symbol)}&timeframe=${timeframe}`).catch(() => ({ entries: [] })),
  ]);
  const times = bars().time;
  const barAt = (seconds) => { // the last loaded bar at or before ``seconds``
    let lo = 0, hi = times.length - 1, found = null;
    while (lo <= hi) { const mid = (lo + hi) >> 1; if (times[mid] <= seconds) { found = times[mid]; lo = mid + 1; } else hi = mid - 1; }
    return found ?? times[0];
  };
  const items = [];
  for (const g of coverage.gaps) items.push({ kind: "gap", start: g.start, end: g.end });
  for (const e of quarantine.entries || []) {
    if (e.start && (!e.symbol || e.symbol === symbol)) items.push({ kind: "quarantined", start: e.start, end: e.end, id: e.id });
  }
  const m = items.filter(() => times.length).map((it) => ({
    time: barAt(Date.parse(it.start) / 1000), position: it.kind === "gap" ? "aboveBar" : "belowBar",
    shape: it.kind === "gap" ? "arrowDown" : "square", color: it.kind === "gap" ? c.gap : c.warn, text: it.kind,
  })).sort((a, b) => a.time - b.time);
  markers.setMarkers(m);
  list.dataset.gaps = String(coverage.gaps.length);
  if (!items.length) { clear(list, h("p", { class: "muted" }, "no gaps and no quarantined batches in this range")); return; }
  clear(list, h("h2", { class: "muted", style: { fontSize: "13px" } }, `${coverage.gaps.length} gap(s), ${items.length - coverage.gaps.length} quarantined batch(es)`),
    h("ul", {}, items.slice(0, 200).map((it) => h("li", { "data-mark": it.kind },
      h("strong", { class: it.kind === "gap" ? "error" : "" }, it.kind), ` ${utc(it.start)} → ${utc(it.end)} `,
      h("button", { type: "button", onclick: () => chart.timeScale().setVisibleRange({ from: Date.parse(it.start) / 1000 - 3600 * 6, to: Date.parse(it.end) / 1000 + 3600 * 6 }) }, "show")))));
}
