// Jobs: the list (refreshed while any job is live) and the form that starts one.

import { h, replace, table, num, pct, when, badge, errorBox, link, card } from "../dom.js";

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const REFRESH_MS = 3000;

export function headlineMetric(metrics) {
  for (const name of ["val_accuracy", "val_subset_accuracy", "val_macro_f1"]) {
    if (metrics && typeof metrics[name] === "number") return [name, metrics[name]];
  }
  return [null, null];
}

export async function list(ctx, page) {
  const body = h("div");
  replace(page,
    h("h1", {}, "Jobs", h("span", { class: "spacer" }),
      h("button", { onclick: () => ctx.go("#/jobs/new") }, "New job")),
    card(null, body));
  let timer = null;
  const refresh = async () => {
    const { data } = await ctx.api.get("/v1/jobs", { limit: 100 });
    replace(body, data.length ? jobsTable(data) : h("p", { class: "empty" },
      "No jobs yet. Upload a dataset, then start a job on it."));
    if (data.some((j) => !TERMINAL.has(j.status))) timer = setTimeout(() => refresh().catch(() => {}), REFRESH_MS);
  };
  await refresh();
  return () => clearTimeout(timer);
}

function jobsTable(jobs) {
  const rows = jobs.map((j) => {
    const [, value] = headlineMetric(j.metrics);
    return h("tr", {},
      h("td", { class: "mono" }, link(`#/jobs/${j.id}`, j.id)),
      h("td", {}, badge(j.status)),
      h("td", {}, j.strategy.name),
      h("td", {}, j.base_model),
      h("td", { class: "mono" }, link(`#/datasets/${j.dataset_id}`, j.dataset_id)),
      h("td", { class: "num" }, j.status === "running" ? `${j.progress.percent.toFixed(0)}%` : "—"),
      h("td", { class: "num" }, pct(value)),
      h("td", {}, when(j.created_at)));
  });
  return table(["job", "status", "strategy", "base model", "dataset", "#progress", "#val accuracy", "created"],
    rows, { "data-testid": "jobs" });
}

function field(labelText, input) {
  return h("label", {}, labelText, input);
}

export async function create(ctx, page, _params, query) {
  const [datasets, bases] = await Promise.all([
    ctx.api.get("/v1/datasets", { limit: 200 }),
    ctx.api.get("/v1/base-models"),
  ]);
  const usable = datasets.data.filter((d) => d.status === "ready" && d.task !== "unlabeled-text");
  if (!usable.length) {
    replace(page, h("h1", {}, "New job"),
      card(null, h("p", {}, "Upload a labeled dataset first: ", link("#/datasets", "Datasets"), ".")));
    return;
  }
  const dataset = h("select", { name: "dataset_id" },
    usable.map((d) => h("option", { value: d.id, selected: d.id === query.get("dataset") }, `${d.name || d.id} (${d.task}, ${d.num_rows} rows)`)));
  const base = h("select", { name: "base_model" });
  const strategy = h("select", { name: "strategy" },
    ctx.config.strategies.map((s) => h("option", { value: s, selected: s === "full" }, s)));
  // left empty: chosen from the data (the job's `auto` says what and why)
  const epochs = h("input", { name: "epochs", type: "number", min: 1, placeholder: "auto" });
  const rate = h("input", { name: "learning_rate", type: "text", placeholder: "auto" });
  const batch = h("input", { name: "batch_size", type: "number", min: 1, placeholder: "auto" });
  const maxLength = h("input", { name: "max_length", type: "number", min: 8, placeholder: "auto" });
  const longText = h("select", { name: "long_text" },
    [["", "auto"], ["truncate", "truncate"], ["head_tail", "head and tail"], ["chunks", "chunks"]]
      .map(([value, text]) => h("option", { value }, text)));
  const options = h("textarea", { name: "strategy_options", placeholder: '{"r": 8} — the strategy\'s own fields, as JSON (optional)' });
  const more = h("textarea", { name: "hyperparameters", placeholder: '{"early_stopping": {"patience": 5}} — other hyperparameters, as JSON (optional)' });
  const status = h("div");

  const fillBases = () => {
    const task = usable.find((d) => d.id === dataset.value)?.task;
    const fits = bases.data.filter((b) => !task || b.tasks.includes(task));
    replace(base, fits.map((b) => h("option", { value: b.id }, `${b.id} (${b.family}, ${num(b.parameter_count)} parameters)`)));
  };
  dataset.addEventListener("change", fillBases);
  fillBases();

  const form = h("form", { class: "stack", "aria-label": "New job" },
    field("Dataset", dataset), field("Base model", base), field("Strategy", strategy),
    h("div", { class: "row" }, field("Epochs", epochs), field("Learning rate", rate), field("Batch size", batch),
      field("Max length (tokens)", maxLength), field("Long texts", longText)),
    field("Strategy options", options),
    field("More hyperparameters", more),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Start job")),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = jobBody({ dataset, base, strategy, epochs, rate, batch, maxLength, longText, options, more });
    } catch (error) {
      replace(status, errorBox(error));
      return;
    }
    try {
      const job = await ctx.api.post("/v1/jobs", body);
      ctx.go(`#/jobs/${job.id}`);
    } catch (error) {
      replace(status, errorBox(error));
    }
  });
  replace(page, h("h1", {}, "New job"), card(null, form));
}

function jsonObject(input, what) {
  if (!input.value.trim()) return {};
  let value;
  try {
    value = JSON.parse(input.value);
  } catch (error) {
    throw new Error(`${what} are not valid JSON: ${error.message}`);
  }
  if (typeof value !== "object" || Array.isArray(value) || value === null) {
    throw new Error(`${what} must be a JSON object, such as {"r": 8}.`);
  }
  return value;
}

function jobBody({ dataset, base, strategy, epochs, rate, batch, maxLength, longText, options, more }) {
  const extra = jsonObject(options, "Strategy options");
  const hyperparameters = jsonObject(more, "More hyperparameters");
  if (longText.value) hyperparameters.long_text = longText.value;
  for (const [name, input] of [["epochs", epochs], ["learning_rate", rate], ["batch_size", batch], ["max_length", maxLength]]) {
    const text = input.value.trim();
    if (!text) continue;
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`${name.replace("_", " ")}: '${text}' is not a number (such as 2e-5).`);
    hyperparameters[name] = value;
  }
  return {
    dataset_id: dataset.value,
    base_model: base.value,
    strategy: { ...extra, name: strategy.value },
    hyperparameters,
  };
}
