// The gateway's REST API, same origin: the key (when the gateway has one) goes in the
// X-API-Key header, is kept in sessionStorage (this tab only) and never in a URL.

const KEY = "ktrdr.apiKey";
let keyWaiters = [];
let askKey = null; // set by main.js: shows the dialog; resolves once a key was entered

export function setKeyPrompt(fn) { askKey = fn; }
export function apiKey() { return sessionStorage.getItem(KEY); }
export function forgetKey() { sessionStorage.removeItem(KEY); }
export function storeKey(key) { sessionStorage.setItem(KEY, key); }

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = apiKey();
  if (key) h.set("X-API-Key", key);
  return h;
}

async function needKey(rejected) {
  if (rejected) forgetKey();
  if (!askKey) throw new ApiError(401, { detail: "this gateway requires an API key" });
  if (keyWaiters.length === 0) {
    askKey(rejected).then(() => { const w = keyWaiters; keyWaiters = []; w.forEach((r) => r()); });
  }
  await new Promise((resolve) => keyWaiters.push(resolve));
}

// fetch with the key; a 401 asks for the key and tries again. A read answered 504 (a service
// busy past the gateway's timeout: "try again") is asked again twice, after its Retry-After.
const RETRIES = 2;
export async function request(path, { method = "GET", body, accept = "application/json", signal } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const init = { method, signal, headers: headers({ Accept: accept }) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers.set("Content-Type", "application/json");
    }
    const reply = await fetch(path, init);
    if (reply.status === 401) { await needKey(Boolean(apiKey())); continue; }
    if (reply.status === 504 && method === "GET" && attempt < RETRIES) {
      const wait = Number(reply.headers.get("Retry-After")) || 1;
      await new Promise((r) => setTimeout(r, Math.min(wait, 5) * 1000));
      continue;
    }
    return reply;
  }
}

export async function json(path, options) {
  const reply = await request(path, options);
  const text = await reply.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data;
}

export const get = (path, options) => json(path, options);
export const post = (path, body, options) => json(path, { ...options, method: "POST", body });

// Server-sent events read with fetch (EventSource cannot send a header): calls onEvent(type,
// data, id) for each event, reconnects with Last-Event-ID after a drop, until stop() is called.
export function stream(path, onEvent, { onState = () => {} } = {}) {
  const control = new AbortController();
  let lastId = null;
  let wait = 500;
  (async () => {
    while (!control.signal.aborted) {
      try {
        const extra = { Accept: "text/event-stream" };
        if (lastId !== null) extra["Last-Event-ID"] = lastId;
        const reply = await fetch(path, { headers: headers(extra), signal: control.signal });
        if (reply.status === 401) { await needKey(Boolean(apiKey())); continue; }
        if (!reply.ok || !reply.body) throw new ApiError(reply.status, null);
        onState("open");
        wait = 500;
        const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = "message", data = [], id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") type = val;
              else if (field === "data") data.push(val);
              else if (field === "id") id = val;
            }
            if (id !== null) lastId = id;
            if (data.length) {
              let parsed;
              try { parsed = JSON.parse(data.join("\n")); } catch { parsed = data.join("\n"); }
              onEvent(type, parsed, id);
            }
          }
        }
      } catch (e) {
        if (control.signal.aborted) break;
      }
      if (control.signal.aborted) break;
      onState("closed");
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10000);
    }
  })();
  return { stop: () => control.abort() };
}

// A job just submitted is in the event log once its service accepts it (the gateway answers
// 404 until then): ask again every half second, saying so, for up to ``patience_s``.
export async function jobWhenAccepted(path, onWait = () => {}, patience_s = 60) {
  const until = Date.now() + patience_s * 1000;
  for (;;) {
    try {
      return await json(path);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404 || Date.now() > until) throw e;
      onWait(e);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
