// The dashboard's shell: sign in with an API key, the navigation, and a hash router that
// gives each view the page's main element and takes back its clean-up when it is left.

import { Api } from "./api.js";
import { h, replace, errorBox } from "./dom.js";
import * as datasets from "./views/datasets.js";
import * as jobs from "./views/jobs.js";
import * as job from "./views/job.js";
import * as sweeps from "./views/sweeps.js";
import * as models from "./views/models.js";

const KEY = "tuneserve.key";
const body = document.body;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

const config = {
  root: body.dataset.root || "",
  strategies: (body.dataset.strategies || "").split(" ").filter(Boolean),
  tasks: (body.dataset.tasks || "").split(" ").filter(Boolean),
};

// [pattern, section, view]; a view is (ctx, main, params) => cleanup | undefined
const ROUTES = [
  [/^\/datasets$/, "datasets", datasets.list],
  [/^\/datasets\/([\w-]+)$/, "datasets", datasets.detail],
  [/^\/jobs$/, "jobs", jobs.list],
  [/^\/jobs\/new$/, "jobs", jobs.create],
  [/^\/jobs\/([\w-]+)$/, "jobs", job.detail],
  [/^\/sweeps$/, "sweeps", sweeps.list],
  [/^\/sweeps\/([\w-]+)$/, "sweeps", sweeps.detail],
  [/^\/models$/, "models", models.list],
  [/^\/models\/([\w-]+)$/, "models", models.detail],
];

let ctx = null;
let cleanup = null;
let generation = 0;

function signOut(reason) {
  sessionStorage.removeItem(KEY);
  ctx = null;
  route(reason);
}

function signInForm(reason) {
  nav.hidden = true;
  replace(who);
  const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true,
    placeholder: "ts_...", "aria-label": "API key" });
  const status = h("div");
  const form = h("form", { class: "stack", "aria-label": "Sign in" },
    h("label", {}, "API key", input),
    h("button", { type: "submit" }, "Sign in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const api = new Api(config.root, input.value.trim());
    try {
      const usage = await api.get("/v1/usage");
      sessionStorage.setItem(KEY, api.key);
      start(api, usage);
    } catch (error) {
      replace(status, errorBox(error));
    }
  });
  replace(main, h("section", { class: "card signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (`tuneserve keys create`, or the first key `tuneserve up` printed). " +
      "It stays in this tab only."),
    reason ? errorBox(reason) : null,
    form));
  input.focus();
}

function start(api, usage) {
  api.onUnauthorized = (error) => signOut(error);
  ctx = { api, config, usage, go: (hash) => { window.location.hash = hash; } };
  nav.hidden = false;
  replace(who,
    h("span", { class: "mono", "data-testid": "tenant" }, usage.tenant_id),
    h("span", {}, usage.key_scopes.join(", ")),
    h("button", { class: "secondary", onclick: () => signOut(null) }, "Sign out"));
  route();
}

async function route(reason = null) {
  if (cleanup) { cleanup(); cleanup = null; }
  generation += 1;
  if (!ctx) {
    const key = sessionStorage.getItem(KEY);
    if (!key) return signInForm(reason);
    const api = new Api(config.root, key);
    try {
      return start(api, await api.get("/v1/usage"));
    } catch (error) {
      sessionStorage.removeItem(KEY);
      return signInForm(error);
    }
  }
  const path = window.location.hash.replace(/^#/, "").split("?")[0] || "/jobs";
  const query = new URLSearchParams(window.location.hash.split("?")[1] || "");
  for (const [pattern, section, view] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.section === section);
    // each visit renders into its own element: a view still loading when the user moves on
    // writes into a detached one, and its clean-up runs as soon as it is handed back
    const page = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    replace(main, page);
    const mine = ++generation;
    let done = null;
    try {
      done = (await view(ctx, page, match.slice(1), query)) || null;
    } catch (error) {
      replace(page, errorBox(error));
    }
    if (mine === generation) cleanup = done;
    else if (done) done();
    return;
  }
  replace(main, errorBox(new Error(`No page at ${path}.`)));
}

window.addEventListener("hashchange", () => route());
route();
