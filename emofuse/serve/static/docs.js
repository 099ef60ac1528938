// The API docs (Swagger UI from the swagger-ui-bundle wheel, no CDN). When the server wants
// a token, ask for it once, keep it in memory only, and send it with every request (the
// schema fetch included). An external script, so the page needs no inline code.
"use strict";

let token = null;

function withToken(request) {
  if (token) request.headers.Authorization = `Bearer ${token}`;
  return request;
}

async function fetchSchema() {
  const response = await fetch("/openapi.json", {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 401) return null;
  if (!response.ok) throw new Error(`GET /openapi.json: HTTP ${response.status}`);
  return response.json();
}

function showDocs(spec) {
  // The wheel's Swagger UI (4.x) refuses an "openapi: 3.1.x" document outright, though it
  // renders FastAPI's schema well enough when told it is 3.0.
  if (String(spec.openapi).startsWith("3.1")) spec.openapi = "3.0.3";
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    requestInterceptor: withToken,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
}

async function start() {
  const form = document.getElementById("docs-token-form");
  const error = document.getElementById("docs-token-error");
  const spec = await fetchSchema();
  if (spec) {
    showDocs(spec);
    return;
  }
  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("docs-token");
    token = input.value.trim();
    input.value = "";
    const authorized = await fetchSchema();
    if (!authorized) {
      token = null;
      error.textContent = "That token was not accepted.";
      return;
    }
    form.hidden = true;
    error.textContent = "";
    showDocs(authorized);
  });
}

start();
