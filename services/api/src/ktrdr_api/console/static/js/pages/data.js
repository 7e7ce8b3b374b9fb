// Data: every dataset, a coverage calendar per dataset with "fill these gaps", the load form.
import { get, post } from "../api.js";
import { TIMEFRAMES, badge, bytes, card, clear, day, errorBox, h, jobLink, kv, num, table, utc } from "../ui.js";

const STATES = [
  ["stored", "stored"], ["partial", "partly stored"], ["gap", "gap that can be filled"],
  ["empty", "IB answered empty"], ["closed", "market closed"], ["none", "not asked for"],
];

export async function render(main, route, ctx) {
  if (route.parts.length >= 2) return renderDataset(main, route.parts[0], route.parts[1], ctx);
  const list = h("div", { id: "datasets" }, h("p", { class: "muted" }, "loading datasets…"));
  main.append(h("h1", {}, "Data"), h("div", { class: "row" },
    h("section", { class: "card", style: { flex: "3 1 640px" } }, h("h2", {}, "Datasets"), list),
    loadForm(ctx, route.query)));
  try {
    const { datasets } = await get("/api/v1/data");
    clear(list, datasetTable(datasets));
  } catch (e) { clear(list, errorBox(e)); }
  ctx.ready();
}

function datasetTable(datasets) {
  return h("div", { class: "scroll" }, table([
    { title: "symbol", cell: (d) => h("a", { href: `#/data/${encodeURIComponent(d.symbol)}/${d.timeframe}` }, d.symbol) },
    { title: "timeframe", cell: (d) => d.timeframe },
    { title: "hours", cell: (d) => (d.use_rth ? "regular" : d.use_rth === false ? "extended" : "–") },
    { title: "first", cell: (d) => utc(d.first) },
    { title: "last", cell: (d) => utc(d.last) },
    { title: "rows", class: "num", cell: (d) => num(d.rows) },
    { title: "size", class: "num", cell: (d) => bytes(d.bytes) },
    { title: "state", cell: (d) => d.damaged ? badge("damaged", "damaged") : d.quarantined ? badge("warn", `${d.quarantined} quarantined`) : badge("ok", "ok") },
    { title: "", cell: (d) => h("a", { href: `#/chart?symbol=${encodeURIComponent(d.symbol)}&timeframe=${d.timeframe}` }, "chart") },
  ], datasets, { empty: "no datasets yet: load one with the form", rowAttrs: (d) => ({ "data-dataset": `${d.symbol}/${d.timeframe}`, title: d.damaged || "" }) }));
}

// The load form: the symbol is looked up at IB as it is typed (debounced).
export function loadForm(ctx, query = new URLSearchParams()) {
  const symbol = h("input", { name: "symbol", required: true, placeholder: "AAPL, EURUSD, ES…", autocomplete: "off", value: query.get("symbol") || "", pattern: "[A-Za-z0-9 ./&-]{1,32}" });
  const status = h("div", { class: "hint muted", id: "symbol-status" });
  const type = h("select", { name: "instrument_type" }, h("option", { value: "" }, "as IB finds it"), ["STK", "CASH", "FUT", "IND"].map((t) => h("option", { value: t }, t)));
  const timeframe = h("select", { name: "timeframe" }, TIMEFRAMES.map((t) => h("option", { value: t, selected: t === (query.get("timeframe") || "1h") }, t)));
  const mode = h("select", { name: "mode" }, [["tail", "tail: after the last stored bar"], ["backfill", "backfill: before the first"], ["full", "full: the range, gaps included"]].map(([v, t]) => h("option", { value: v }, t)));
  const start = h("input", { name: "start", type: "date", value: query.get("start") || "" });
  const end = h("input", { name: "end", type: "date", value: query.get("end") || "" });
  const what = h("select", { name: "what_to_show" }, h("option", { value: "" }, "default (TRADES; MIDPOINT for forex)"), ["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"].map((t) => h("option", { value: t }, t)));
  const rth = h("input", { name: "use_rth", type: "checkbox" });
  const currency = h("input", { name: "currency", placeholder: "USD", size: 5 });
  const exchange = h("input", { name: "exchange", placeholder: "SMART, CME…" });
  const primary = h("input", { name: "primary_exchange", placeholder: "NASDAQ…" });
  const month = h("input", { name: "contract_month", placeholder: "YYYYMM", pattern: "\\d{6}(\\d{2})?" });
  const conId = h("input", { name: "con_id", type: "number", min: 1, placeholder: "conId" });
  const submit = h("button", { type: "submit", class: "primary", id: "load-submit" }, "Load");
  const result = h("div", { id: "load-result" });
  let timer = null, asked = 0;
  const validate = () => {
    clearTimeout(timer);
    const value = symbol.value.trim().toUpperCase();
    if (!value) { status.textContent = ""; status.className = "hint muted"; return; }
    status.textContent = "asking IB…"; status.className = "hint muted";
    timer = setTimeout(async () => {
      const mine = ++asked;
      try {
        const body = { symbol: value };
        if (type.value) body.instrument_type = type.value;
        const info = await post("/api/v1/ib/symbols/validate", body);
        if (mine !== asked) return;
        status.className = "hint ok"; status.dataset.valid = "true";
        status.textContent = `✓ ${info.symbol}: ${info.instrument_type} on ${info.exchange}, ${info.currency}, ${info.time_zone}` +
          (info.head_timestamp ? `; IB has bars since ${day(info.head_timestamp)}` : "") + (info.description ? ` — ${info.description}` : "");
      } catch (e) {
        if (mine !== asked) return;
        status.className = "hint error"; status.dataset.valid = "false";
        status.textContent = `✗ ${e.message}`;
      }
    }, 350);
  };
  symbol.addEventListener("input", validate);
  type.addEventListener("change", validate);
  if (symbol.value) validate();
  const form = h("form", { class: "stack", id: "load-form", novalidate: true },
    h("label", { for: "f-symbol" }, "symbol"), symbol, status,
    h("label", {}, "instrument"), type,
    h("label", {}, "timeframe"), timeframe,
    h("label", {}, "mode"), mode,
    h("label", {}, "start (UTC)"), start,
    h("label", {}, "end (UTC)"), end,
    h("details", { class: "full" }, h("summary", {}, "contract details, whatToShow, RTH"),
      h("div", { class: "stack", style: { display: "grid", gridTemplateColumns: "max-content 1fr", gap: "8px 12px", marginTop: "8px" } },
        h("label", {}, "whatToShow"), what, h("label", {}, "regular hours only"), rth,
        h("label", {}, "currency"), currency, h("label", {}, "exchange"), exchange,
        h("label", {}, "primary exchange"), primary, h("label", {}, "contract month"), month,
        h("label", {}, "conId"), conId)),
    h("div", { class: "full" }, submit), result);
  symbol.id = "f-symbol";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!symbol.value.trim()) { status.className = "hint error"; status.textContent = "a symbol is required"; symbol.focus(); return; }
    const body = { symbol: symbol.value.trim().toUpperCase(), timeframe: timeframe.value, mode: mode.value };
    if (start.value) body.start = `${start.value}T00:00:00Z`;
    if (end.value) body.end = `${end.value}T00:00:00Z`;
    if (type.value) body.instrument_type = type.value;
    if (what.value) body.what_to_show = what.value;
    if (rth.checked) body.use_rth = true;
    const contract = {};
    if (currency.value.trim()) contract.currency = currency.value.trim().toUpperCase();
    if (exchange.value.trim()) contract.exchange = exchange.value.trim().toUpperCase();
    if (primary.value.trim()) contract.primary_exchange = primary.value.trim().toUpperCase();
    if (month.value.trim()) contract.contract_month = month.value.trim();
    if (conId.value) contract.con_id = Number(conId.value);
    if (Object.keys(contract).length) body.contract = contract;
    submit.disabled = true;
    try {
      const job = await post("/api/v1/data/load", body);
      clear(result, h("p", {}, "started ", jobLink(job.job_id)));
      ctx.go(`#/jobs/${job.job_id}`);
    } catch (e) {
      clear(result, errorBox(e));
    } finally { submit.disabled = false; }
  });
  return h("section", { class: "card", style: { flex: "1 1 360px" } }, h("h2", {}, "Load bars from IB"), form);
}

// One dataset: its numbers and its coverage calendar.
async function renderDataset(main, symbol, timeframe, ctx) {
  const head = h("h1", {}, h("a", { href: "#/data" }, "Data"), " / ", `${symbol} ${timeframe}`,
    h("a", { href: `#/chart?symbol=${encodeURIComponent(symbol)}&timeframe=${timeframe}`, class: "muted" }, "chart →"));
  const summary = h("div", {}, h("p", { class: "muted" }, "loading coverage…"));
  const calendarBox = h("div", { id: "coverage-calendar", class: "calendar" });
  const actions = h("div", { class: "toolbar", id: "gap-actions" });
  const narrow = card("Dataset", summary), wide = card("Coverage by session day", legend(), actions, calendarBox);
  narrow.style.flex = "1 1 260px"; wide.style.flex = "3 1 780px";
  main.append(head, h("div", { class: "row" }, narrow, wide));
  let watching = null;
  const refresh = async () => {
    const coverage = await get(`/api/v1/data/${encodeURIComponent(symbol)}/${timeframe}/coverage?days=true`);
    const days = coverage.days || [];
    const counts = Object.fromEntries(STATES.map(([s]) => [s, 0]));
    days.forEach((d) => { counts[d.state] = (counts[d.state] || 0) + 1; });
    clear(summary, kv([
      ["rows", num(coverage.rows)], ["first", utc(coverage.first)], ["last", utc(coverage.last)],
      ["stored ranges", num(coverage.stored.length)], ["gaps", num(coverage.gaps.length)],
      ["IB answered empty", num(coverage.answered_empty.length)],
      ["session days", STATES.filter(([s]) => counts[s]).map(([s, t]) => `${counts[s]} ${t}`).join(", ") || "–"],
    ]));
    drawCalendar(calendarBox, days);
    const fillable = days.filter((d) => d.state === "gap" || d.state === "partial");
    const fill = h("button", { type: "button", class: "primary", id: "fill-gaps", disabled: !coverage.gaps.length },
      coverage.gaps.length ? `Fill these gaps (${fillable.length} day${fillable.length === 1 ? "" : "s"}, ${coverage.gaps.length} range${coverage.gaps.length === 1 ? "" : "s"})` : "No gaps to fill");
    const note = h("span", { class: "muted", id: "fill-status" });
    fill.addEventListener("click", async () => {
      fill.disabled = true;
      try {
        const job = await post("/api/v1/data/load", {
          symbol, timeframe, mode: "full", start: coverage.gaps[0].start, end: coverage.gaps[coverage.gaps.length - 1].end,
        });
        clear(note, "filling: ", jobLink(job.job_id), " …");
        watching = setInterval(async () => {
          const state = await get(`/api/v1/jobs/${job.job_id}`).catch(() => null);
          if (state && !["pending", "running", "accepted"].includes(state.status)) {
            clearInterval(watching); watching = null;
            await refresh();
            document.getElementById("fill-status")?.replaceChildren("last fill ", jobLink(job.job_id), ` ${state.status}`);
          }
        }, 1000);
      } catch (e) { clear(note, errorBox(e)); fill.disabled = false; }
    });
    clear(actions, fill, note);
  };
  try { await refresh(); } catch (e) { clear(summary, errorBox(e)); }
  ctx.ready();
  return () => { if (watching) clearInterval(watching); };
}

function legend() {
  return h("div", { class: "legend" }, STATES.map(([s, t]) => h("span", {}, h("span", { class: "day", "data-state": s }), t)));
}

// A year a row: columns are ISO weeks (Monday first), each cell one calendar day.
export function drawCalendar(box, days) {
  if (!days.length) { clear(box, h("p", { class: "muted" }, "nothing stored or asked for yet")); return; }
  const byYear = new Map();
  for (const d of days) {
    const year = d.date.slice(0, 4);
    if (!byYear.has(year)) byYear.set(year, []);
    byYear.get(year).push(d);
  }
  const rows = [];
  for (const [year, list] of [...byYear.entries()].reverse()) {
    const weeks = h("div", { class: "cal-weeks" });
    const first = new Date(`${list[0].date}T00:00:00Z`);
    const pad = (first.getUTCDay() + 6) % 7; // Monday = 0
    for (let i = 0; i < pad; i += 1) weeks.append(h("span", { class: "pad" }));
    for (const d of list) {
      weeks.append(h("span", { class: "day", "data-date": d.date, "data-state": d.state, title: `${d.date}: ${STATES.find(([s]) => s === d.state)?.[1] || d.state}` }));
    }
    rows.push(h("div", { class: "cal-year" }, h("span", { class: "label" }, year), weeks));
  }
  clear(box, rows);
}
