// Overview: the IB connection, IB's pacing window, the services and JetStream, live (SSE).
import { stream } from "../api.js";
import { ago, badge, bytes, card, clear, duration, h, kv, num, progressBar, setLive, table, utc } from "../ui.js";

function ibState(ib) {
  if (!ib) return ["disconnected", "no connector"];
  if (!ib.connected) return ["disconnected", "disconnected"];
  if (ib.link_ok === false) return ["link_lost", "link to IB lost"];
  const broken = Object.values(ib.farms || {}).filter((s) => s === "broken").length;
  if (broken) return ["degraded", `${broken} farm${broken > 1 ? "s" : ""} broken`];
  return ["connected", "connected"];
}

export function ibCard(snapshot, receivedAt) {
  const ib = snapshot.ib;
  const [state, text] = ibState(ib);
  const farms = Object.entries(ib?.farms || {});
  let serverTime = "–";
  if (ib?.server_time) {
    const drift = Date.now() - receivedAt;
    serverTime = utc(new Date(new Date(ib.server_time).getTime() + drift), { seconds: true });
  }
  return card("IB connection",
    h("p", {}, badge(state, text), " ", h("span", { class: "muted", id: "ib-since" },
      ib?.link_lost_since ? `link lost since ${utc(ib.link_lost_since, { seconds: true })} (${ago(ib.link_lost_since)})`
        : ib?.since ? `since ${utc(ib.since)} (${ago(ib.since)})` : "")),
    kv([
      ["gateway", ib ? `${ib.host}:${ib.port}` : "–"],
      ["client id", ib ? String(ib.client_id) : "–"],
      ["server version", ib?.server_version ?? "–"],
      ["IB server time", h("span", { id: "server-time" }, serverTime)],
      ["requests made", num(ib?.requests_made)],
      (ib?.last_error || snapshot.problem) && ["problem", h("span", { class: "error" }, ib?.last_error || snapshot.problem)],
    ]),
    farms.length ? h("div", { class: "scroll" }, table([
      { title: "data farm", cell: ([name]) => name },
      { title: "state", cell: ([, s]) => badge(s) },
      { title: "since", cell: ([name]) => (ib.farms_since?.[name] ? `${utc(ib.farms_since[name], { seconds: true })} (${ago(ib.farms_since[name])})` : "–") },
    ], farms, { rowAttrs: ([name]) => ({ "data-farm": name }) })) : null);
}

export function pacingCard(snapshot, receivedAt) {
  const p = snapshot.pacing || {};
  const used = p.requests_in_window ?? 0;
  const max = p.window_max ?? 60;
  const nextFree = Math.max(0, (p.next_free_s ?? 0) - (Date.now() - receivedAt) / 1000);
  return card("IB pacing",
    h("div", { class: "meter", id: "pacing-meter", "data-used": used, "data-max": max },
      progressBar(used / max, `${used} / ${max} requests in IB's ${duration(p.window_s ?? 600)} window`)),
    kv([
      ["next free slot", h("span", { id: "next-free" }, used < max && nextFree === 0 ? "now" : `in ${duration(nextFree)}`)],
      ["waiting requests", num(p.waiting_requests ?? 0)],
      ["open requests", num(p.open_requests ?? 0)],
      ["soft delay", p.soft_delay_s ? `${p.soft_delay_s.toFixed(2)} s` : "none"],
    ]));
}

function servicesCard(snapshot) {
  const services = snapshot.services || [];
  return card("Services ($SRV)", h("div", { class: "scroll" }, table([
    { title: "service", cell: (s) => s.name },
    { title: "version", cell: (s) => s.version || "–" },
    { title: "id", cell: (s) => h("span", { class: "mono" }, (s.id || "").slice(0, 10)) },
    { title: "requests", class: "num", cell: (s) => num(s.requests ?? 0) },
    { title: "errors", class: "num", cell: (s) => (s.errors ? h("span", { class: "error" }, num(s.errors)) : "0") },
    { title: "last error", cell: (s) => h("span", { class: "muted" }, (s.endpoints || []).filter((e) => e.last_error).map((e) => `${e.name}: ${e.last_error}`).join("; ")) },
  ], services, { empty: "no service answers $SRV.PING", rowAttrs: (s) => ({ "data-service": s.name }) })),
  (snapshot.missing_services || []).length ? h("p", { class: "error", id: "missing-services" }, `not running: ${snapshot.missing_services.join(", ")}`) : null);
}

function jetstreamCard(snapshot) {
  const js = snapshot.jetstream || {};
  const streams = js.streams || [];
  return card("JetStream", js.problem ? h("p", { class: "error" }, js.problem) : null,
    h("div", { class: "scroll" }, table([
      { title: "stream", cell: (s) => s.name },
      { title: "messages", class: "num", cell: (s) => num(s.messages) },
      { title: "size", class: "num", cell: (s) => bytes(s.bytes) },
      { title: "consumers", class: "num", cell: (s) => num(s.consumers) },
      { title: "pending", class: "num", cell: (s) => num(s.consumer_pending ? Object.values(s.consumer_pending).reduce((a, b) => a + b, 0) : null) },
    ], streams, { empty: "no streams" })),
    js.account ? h("p", { class: "muted" }, `account: ${num(js.account.streams)} streams, ${num(js.account.consumers)} consumers, ${bytes(js.account.storage_bytes)} on disk, ${bytes(js.account.memory_bytes)} in memory`) : null);
}

export async function render(main, route, ctx) {
  const body = h("div", { class: "cards wide", id: "overview" });
  const stamp = h("span", { class: "muted", id: "overview-ts" });
  main.append(h("h1", {}, "Overview", stamp), body);
  let last = null, receivedAt = 0;
  const draw = () => {
    if (!last) return;
    clear(body, ibCard(last, receivedAt), pacingCard(last, receivedAt), servicesCard(last), jetstreamCard(last));
    stamp.textContent = `updated ${utc(last.ts, { seconds: true })}`;
  };
  const feed = stream("/api/v1/overview/events", (type, data) => {
    if (type !== "overview") return;
    last = data; receivedAt = Date.now();
    draw();
    ctx.ready();
  }, { onState: setLive });
  // the countdowns and IB's clock tick between snapshots without asking the server
  const tick = setInterval(draw, 1000);
  return () => { feed.stop(); clearInterval(tick); setLive(""); };
}
