// Jobs: the list with live progress, and one job's page: chunk map, rates, events, cancel.
import { get, jobWhenAccepted, post, stream } from "../api.js";
import { badge, card, clear, duration, errorBox, h, jobLink, kv, num, paramsView, progressBar, setLive, table, utc } from "../ui.js";

const ENDED = new Set(["completed", "failed", "cancelled"]);

export function waitReason(p) {
  if (!p || !p.reason) return p?.message || "";
  const r = p.reason;
  if (r === "pacing" && p.until) return `waiting for IB's pacing window (opens ${utc(p.until, { seconds: true })})`;
  if (r === "ib_disconnected") return `IB disconnected${p.since ? ` since ${utc(p.since)}` : ""}`;
  if (r === "no_connector") return "no ib-connector answers";
  if (r === "storage_full") return "the data directory's disk is full";
  if (r === "queued") return "queued behind other jobs' segments";
  return p.message || r;
}

function progressCell(job) {
  const p = job.progress || {};
  const fraction = p.percent != null ? p.percent / 100 : p.total ? p.done / p.total : ENDED.has(job.status) ? 1 : 0;
  const label = p.total ? `${num(Math.round(p.done))} / ${num(Math.round(p.total))} ${p.unit || ""}` : undefined;
  return h("div", {}, progressBar(fraction, label), h("div", { class: "muted", style: { fontSize: "12px" } }, waitReason(p)));
}

export async function render(main, route, ctx) {
  if (route.parts[0]) return renderJob(main, route.parts[0], ctx);
  const box = h("div", { id: "jobs" }, h("p", { class: "muted" }, "loading jobs…"));
  const kind = h("select", { id: "job-kind" }, h("option", { value: "" }, "every kind"), h("option", { value: "data_load" }, "data loads"), h("option", { value: "training" }, "training runs"));
  main.append(h("h1", {}, "Jobs", kind), h("section", { class: "card" }, box));
  let timer = null, stopped = false;
  const refresh = async () => {
    let running = false;
    try {
      const q = kind.value ? `&kind=${kind.value}` : "";
      const { jobs } = await get(`/api/v1/jobs?limit=200${q}`);
      running = jobs.some((j) => !ENDED.has(j.status));
      clear(box, h("div", { class: "scroll" }, table([
        { title: "job", cell: (j) => jobLink(j.job_id) },
        { title: "kind", cell: (j) => (j.kind || "–").replace("_", " ") },
        { title: "dataset", cell: (j) => (j.symbol ? `${j.symbol} ${j.timeframe || ""}` : "–") },
        { title: "status", cell: (j) => badge(j.status) },
        { title: "progress", cell: progressCell },
        { title: "created", cell: (j) => utc(j.created) },
        { title: "updated", cell: (j) => utc(j.updated, { seconds: true }) },
      ], jobs, { empty: "no jobs yet", rowAttrs: (j) => ({ "data-job": j.job_id, "data-status": j.status }) })));
    } catch (e) { clear(box, errorBox(e)); }
    ctx.ready();
    // refresh often while something runs, rarely otherwise (one request, not one per job)
    if (!stopped) timer = setTimeout(refresh, running ? 1500 : 10000);
  };
  kind.addEventListener("change", () => { clearTimeout(timer); refresh(); });
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

// Fold a load's events into its plan: segment -> state and chunk counts.
export function foldPlan(events) {
  const segments = new Map();
  let ended = null;
  for (const e of events) {
    if (e.type === "planned") {
      for (const s of e.segments || []) segments.set(s.segment_id, { id: s.segment_id, start: s.start, end: s.end, state: "planned", chunks: 0, done: 0, bars: 0, requests: 0 });
    } else if (e.type === "segments_dispatched") {
      for (const id of e.segment_ids || []) { const s = segments.get(id); if (s && s.state === "planned") s.state = "queued"; }
    } else if (e.type === "segment_progress") {
      const s = segments.get(e.segment_id);
      if (s && !["fetched", "failed", "cancelled"].includes(s.state)) Object.assign(s, { state: e.state, chunks: e.chunks, done: e.chunks_done, bars: e.bars, requests: e.ib_requests, until: e.until });
    } else if (e.type === "segment_fetched") {
      const s = segments.get(e.segment_id);
      if (s) Object.assign(s, { state: "fetched", chunks: e.chunks, done: e.chunks, bars: e.bars, requests: e.ib_requests });
    } else if (e.type === "segment_failed") {
      const s = segments.get(e.segment_id);
      if (s) Object.assign(s, { state: /cancel/.test(e.code) ? "cancelled" : "failed", done: e.chunks_done, bars: e.bars, requests: e.ib_requests, error: e.message });
    } else if (ENDED.has(e.type)) ended = e.type;
  }
  if (ended) {
    for (const s of segments.values()) {
      if (ended === "cancelled" && !["fetched", "failed"].includes(s.state)) s.state = "cancelled";
    }
  }
  return { segments: [...segments.values()], ended };
}

function chunkCells(s, ended) {
  const n = Math.max(s.chunks, 1);
  const cells = [];
  for (let i = 0; i < n; i += 1) {
    let state = "planned";
    if (i < s.done) state = "stored";
    else if (s.state === "fetched") state = "stored";
    else if (s.state === "failed") state = "failed";
    else if (s.state === "cancelled") state = "cancelled";
    else if (i === s.done && (s.state === "fetching")) state = "in_flight";
    else if (i === s.done && s.state === "pacing") state = "pacing";
    else if (ended === "cancelled") state = "cancelled";
    cells.push(h("span", { class: "chunk", "data-state": state, title: `chunk ${i + 1} of ${s.chunks || "?"}: ${state.replace("_", " ")}` }));
  }
  return cells;
}

function chunkMap(plan) {
  if (!plan.segments.length) return h("p", { class: "muted" }, "no segments: nothing was missing, or the plan is not made yet");
  return h("div", { class: "chunkmap", id: "chunk-map" }, plan.segments.map((s) => h("div", { class: "segment", "data-segment": s.id, "data-state": s.state },
    h("div", {}, badge(s.state === "fetched" ? "stored" : s.state, s.state.replace("_", " ")), " ",
      h("span", { class: "mono" }, `${utc(s.start)} → ${utc(s.end)}`),
      h("div", { class: "muted", style: { fontSize: "12px" } }, `${num(s.done)}/${num(s.chunks)} chunks, ${num(s.bars)} bars, ${num(s.requests)} IB requests`, s.error ? h("span", { class: "error" }, ` — ${s.error}`) : "")),
    h("div", { class: "cells" }, chunkCells(s, plan.ended)))));
}

function describe(e) {
  switch (e.type) {
    case "accepted": return `${e.kind} accepted ${JSON.stringify(e.params)}`;
    case "planned": return `planned ${e.segments.length} segment(s), ${num(e.cached_before)} bars already stored${(e.notes || []).length ? ` — ${e.notes.join(" ")}` : ""}`;
    case "segments_dispatched": return `dispatched ${e.segment_ids.length} segment(s)`;
    case "segment_progress": return `segment ${e.segment_id.slice(0, 8)} ${e.state}: ${e.chunks_done}/${e.chunks} chunks, ${num(e.bars)} bars`;
    case "segment_fetched": return `segment ${e.segment_id.slice(0, 8)} fetched: ${num(e.bars)} bars in ${e.ib_requests} IB requests`;
    case "segment_failed": return `segment ${e.segment_id.slice(0, 8)} failed: ${e.code} ${e.message}`;
    case "progress": return `${num(Math.round(e.done))}/${num(Math.round(e.total))} ${e.unit} ${e.reason ? `(${waitReason(e)})` : ""}${e.rate ? `, ${num(Math.round(e.rate))} bars/s` : ""}`;
    case "epoch_completed": return `epoch ${e.epoch}/${e.epochs}: train ${e.train_loss.toFixed(4)}, val ${e.val_loss.toFixed(4)}, acc ${(e.val_accuracy * 100).toFixed(1)} %`;
    case "cancel_requested": return `cancel requested: ${e.reason}`;
    case "completed": return "completed";
    case "failed": return `failed: ${e.code} ${e.message}`;
    case "cancelled": return `cancelled: ${e.reason}`;
    default: return e.type;
  }
}

async function renderJob(main, jobId, ctx) {
  const status = h("span", { id: "job-status" });
  const cancel = h("button", { type: "button", class: "danger", id: "job-cancel" }, "Cancel job");
  const facts = h("div", {});
  const mapBox = h("div", {}, h("p", { class: "muted" }, "waiting for the plan…"));
  const timeline = h("ol", {});
  const extra = h("div", {});
  main.append(h("h1", {}, h("a", { href: "#/jobs" }, "Jobs"), " / ", h("span", { class: "mono" }, jobId.slice(0, 8)), status, cancel),
    h("div", { class: "row" }, card("Job", facts), card("Plan: segments and chunks", mapBox)), extra,
    card("Events", h("div", { class: "timeline", id: "job-events" }, timeline)));
  const events = [];
  let job = null;
  const draw = () => {
    if (!job) return;
    const p = job.progress || {};
    clear(status, badge(job.status));
    status.dataset.status = job.status;
    cancel.hidden = ENDED.has(job.status) || job.status === "cancelling";
    clear(facts, progressCell(job), kv([
      ["kind", job.kind || "–"],
      ["params", paramsView(job.params)],
      ["created", utc(job.created, { seconds: true })],
      ["updated", utc(job.updated, { seconds: true })],
      ["bars fetched", num(job.bars_fetched)],
      ["bars/s", !ENDED.has(job.status) && p.rate != null ? `${num(Math.round(p.rate))} (lately)`
        : job.execution_time_s ? `${num(Math.round(job.bars_fetched / job.execution_time_s))} (average)` : "–"],
      ["IB requests", `${num(job.ib_requests)}${p.requests_planned ? ` of ≥ ${num(p.requests_planned)} planned` : ""}`],
      ["segments", `${num(job.segments_fetched)} fetched, ${num(job.segments_failed)} failed of ${num(job.segments_planned)}`],
      p.eta && ["estimated end", utc(p.eta, { seconds: true })],
      job.execution_time_s != null && ["took", duration(job.execution_time_s)],
      job.error && ["error", h("span", { class: "error" }, `${job.error.code}: ${job.error.message}`)],
      job.cancel_reason && ["cancel reason", job.cancel_reason],
      job.notes?.length && ["notes", job.notes.join(" ")],
    ]));
    if (job.kind !== "training") clear(mapBox, chunkMap(foldPlan(events)));
    else clear(mapBox, h("p", {}, "a training run: ", h("a", { href: `#/training/${jobId}` }, "its curves and metrics →")));
  };
  const waiting = h("p", { class: "notice", id: "job-waiting", hidden: true }, "waiting for a service to accept the job…");
  main.append(waiting);
  try { job = await jobWhenAccepted(`/api/v1/jobs/${jobId}`, () => { waiting.hidden = false; }); } catch (e) { main.append(errorBox(e)); ctx.ready(); return; }
  waiting.remove();
  draw();
  let pending = false;
  const feed = stream(`/api/v1/jobs/${jobId}/events`, async (type, data) => {
    const e = { ...data, type };
    events.push(e);
    timeline.prepend(h("li", { "data-type": type }, h("span", { class: "mono muted" }, utc(e.ts, { seconds: true })), " ", describe(e)));
    if (ENDED.has(type)) feed.stop();
    if (!pending) { // one status request per burst of events
      pending = true;
      setTimeout(async () => { pending = false; job = await get(`/api/v1/jobs/${jobId}`).catch(() => job); draw(); }, 250);
    }
    draw();
  }, { onState: setLive });
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await post(`/api/v1/jobs/${jobId}/cancel`, { reason: "cancelled from the web console" }); job = await get(`/api/v1/jobs/${jobId}`); draw(); }
    catch (e) { extra.replaceChildren(errorBox(e)); }
    finally { cancel.disabled = false; }
  });
  ctx.ready();
  return () => { feed.stop(); setLive(""); };
}
