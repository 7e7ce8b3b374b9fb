// API docs: Swagger UI from the vendored bundle, inside the console, so the key travels as
// a header here too (the standalone page at /schema/swagger works when no key is set).
import { get } from "../api.js";
import { apiKey } from "../api.js";
import { h, loadScript, loadStyle } from "../ui.js";

const BASE = "/console/static/vendor/swagger-ui";

export async function render(main, route, ctx) {
  loadStyle(`${BASE}/swagger-ui.css`);
  const host = h("div", { id: "swagger", class: "swagger-host" });
  main.append(h("h1", {}, "API docs", h("a", { href: "/schema/openapi.json", class: "muted", style: { fontSize: "13px" } }, "openapi.json")), host);
  const [spec] = await Promise.all([get("/schema/openapi.json"), loadScript(`${BASE}/swagger-ui-bundle.js`)]);
  window.SwaggerUIBundle({
    spec, domNode: host, deepLinking: false, validatorUrl: null, tryItOutEnabled: false,
    requestInterceptor: (req) => { const key = apiKey(); if (key) req.headers["X-API-Key"] = key; return req; },
  });
  ctx.ready();
  return undefined;
}
