// The console's shell: hash routes, the key dialog, the theme, live-state dot.
import { apiKey, forgetKey, setKeyPrompt, storeKey } from "./api.js";
import { clear, errorBox, h } from "./ui.js";

const PAGES = {
  overview: () => import("./pages/overview.js"),
  data: () => import("./pages/data.js"),
  jobs: () => import("./pages/jobs.js"),
  chart: () => import("./pages/chart.js"),
  training: () => import("./pages/training.js"),
  docs: () => import("./pages/docs.js"),
};

const view = document.getElementById("view");
let cleanup = null;
let generation = 0;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "overview", parts: parts.slice(1), query: new URLSearchParams(query) };
}

export function go(hash) { location.hash = hash; }

// Each page module exports render(main, route, ctx) -> optional cleanup function; it sets
// main.dataset.ready = "true" once its first data is drawn (tests and the bench wait on it).
async function route() {
  const mine = ++generation;
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  const r = parseHash();
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === r.page));
  const load = PAGES[r.page];
  const main = h("div", { class: "page", "data-page": r.page });
  clear(view, main);
  view.dataset.page = r.page;
  delete view.dataset.ready;
  if (!load) { main.append(errorBox(new Error(`no page ${r.page}`))); return; }
  try {
    const module = await load();
    if (mine !== generation) return;
    const ready = () => { if (mine === generation) view.dataset.ready = "true"; };
    cleanup = (await module.render(main, r, { ready, go, isCurrent: () => mine === generation })) || null;
  } catch (e) {
    console.error(e);
    if (mine === generation) main.append(errorBox(e));
  }
}

// The key dialog: shown when the gateway answers 401; resolves once a key is stored.
const dialog = document.getElementById("key-dialog");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
let pending = null;
setKeyPrompt((rejected) => {
  if (pending) return pending;
  keyError.textContent = rejected ? "The gateway refused that key." : "";
  document.body.classList.add("locked");
  pending = new Promise((resolve) => {
    keyForm.onsubmit = (event) => {
      event.preventDefault();
      const key = keyInput.value.trim();
      if (!key) return;
      storeKey(key);
      keyInput.value = "";
      dialog.close();
      document.body.classList.remove("locked");
      document.getElementById("forget-key").hidden = false;
      pending = null;
      resolve();
    };
  });
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
  return pending;
});
dialog.addEventListener("cancel", (e) => e.preventDefault()); // the key is needed to go on

document.getElementById("forget-key").hidden = !apiKey();
document.getElementById("forget-key").addEventListener("click", () => { forgetKey(); location.reload(); });

// Theme: the system's preference unless the user switched (remembered; it is no secret).
const root = document.documentElement;
const savedTheme = localStorage.getItem("ktrdr.theme");
if (savedTheme) root.dataset.theme = savedTheme;
document.getElementById("theme").addEventListener("click", () => {
  const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  localStorage.setItem("ktrdr.theme", root.dataset.theme);
  window.dispatchEvent(new Event("themechange"));
});

window.addEventListener("hashchange", route);
route(); // with a key configured, the page's first request is answered 401 and asks for it
