// Datasets: the list with an upload form, and one dataset's validation report and preview.

import { h, replace, table, num, when, bytes, badge, errorBox, link, card } from "../dom.js";

const COLUMN_FIELDS = [
  ["text_column", "text column"],
  ["label_column", "label column"],
  ["text_pair_column", "text pair column"],
];

export async function list(ctx, page) {
  const { data } = await ctx.api.get("/v1/datasets", { limit: 100 });
  const rows = data.map((d) =>
    h("tr", {},
      h("td", {}, link(`#/datasets/${d.id}`, d.name || d.id)),
      h("td", {}, d.task),
      h("td", {}, badge(d.status)),
      h("td", { class: "num" }, num(d.num_rows)),
      h("td", { class: "num" }, num(d.num_labels)),
      h("td", { class: "num" }, bytes(d.size_bytes)),
      h("td", {}, when(d.created_at))));
  replace(page,
    h("h1", {}, "Datasets"),
    card("Upload a dataset", uploadForm(ctx)),
    card(null, data.length
      ? table(["name", "task", "status", "#rows", "#labels", "#size", "created"], rows, { "data-testid": "datasets" })
      : h("p", { class: "empty" }, "No datasets yet: upload a CSV, JSONL or Parquet file (or a zip of images).")));
}

function uploadForm(ctx) {
  const status = h("div");
  const task = h("select", { name: "task" }, ctx.config.tasks.map((t) => h("option", { value: t }, t)));
  const form = h("form", { class: "stack", "aria-label": "Upload a dataset" },
    h("label", {}, "File (CSV, JSONL, Parquet; a zip for images)", h("input", { type: "file", name: "file", required: true })),
    h("label", {}, "Name", h("input", { name: "name", placeholder: "optional" })),
    h("label", {}, "Task", task),
    h("details", {},
      h("summary", { class: "muted" }, "Columns (when they are not named text / label)"),
      COLUMN_FIELDS.map(([name, text]) => h("label", {}, text, h("input", { name, placeholder: "default" })))),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Upload")),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    for (const [name, value] of [...data.entries()]) if (value === "") data.delete(name);
    const button = form.querySelector("button");
    button.disabled = true;
    replace(status, h("p", { class: "muted" }, "Uploading and validating…"));
    try {
      const dataset = await ctx.api.upload("/v1/datasets", data);
      ctx.go(`#/datasets/${dataset.id}`);
    } catch (error) {
      replace(status, errorBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function detail(ctx, page, [id]) {
  const dataset = await ctx.api.get(`/v1/datasets/${id}`);
  let preview = null;
  try {
    preview = await ctx.api.get(`/v1/datasets/${id}/preview`);
  } catch {
    preview = null; // an image dataset's preview, or none: the report still shows
  }
  const report = dataset.report || {};
  replace(page,
    h("h1", {}, dataset.name || dataset.id, badge(dataset.status)),
    h("div", { class: "row" },
      h("span", { class: "mono muted" }, dataset.id),
      h("span", { class: "spacer" }),
      dataset.status === "ready" && dataset.task !== "unlabeled-text"
        ? h("button", { onclick: () => ctx.go(`#/jobs/new?dataset=${dataset.id}`) }, "Train a model")
        : null,
      h("button", { class: "danger", onclick: () => remove(ctx, page, dataset) }, "Delete")),
    h("div", { class: "grid" },
      card("Summary", summary(dataset, report)),
      card("Labels", labelCounts(report))),
    card("Validation report", findings(report)),
    preview ? card("Preview", previewTable(preview)) : null);
}

function summary(dataset, report) {
  const items = [
    ["task", dataset.task],
    ["rows", num(dataset.num_rows)],
    ["labels", num(dataset.num_labels)],
    ["file", `${dataset.filename || "—"} (${dataset.format}, ${bytes(dataset.size_bytes)})`],
    ["sha256", dataset.sha256 ? dataset.sha256.slice(0, 16) + "…" : "—"],
    ["created", when(dataset.created_at)],
  ];
  const shown = new Set(["format", "rows", "num_labels"]);
  for (const [name, value] of Object.entries(report)) {
    if (value === null || value === false || typeof value === "object" || shown.has(name)) continue;
    items.push([name.replaceAll("_", " "), num(value)]);
  }
  if (report.text_length) {
    const t = report.text_length;
    items.push(["text length (chars)", `min ${t.min}, median ${t.p50}, p95 ${t.p95}, max ${t.max}`]);
  }
  return h("dl", { class: "kv" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function labelCounts(report) {
  const counts = report.label_counts || {};
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h("p", { class: "empty" }, "No labels in this dataset.");
  const top = entries[0][1] || 1;
  const rows = entries.map(([name, count]) => {
    const bar = h("div", { class: "bar" });
    bar.style.width = `${(100 * count) / top}%`; // CSSOM, allowed by the page's policy
    return h("tr", {}, h("td", {}, name), h("td", { class: "num" }, num(count)), h("td", { class: "wide" }, bar));
  });
  return table(["label", "#examples", ""], rows, { "data-testid": "label-counts" });
}

function findings(report) {
  const errors = report.errors || [];
  const warnings = report.warnings || [];
  if (!errors.length && !warnings.length) return h("p", { class: "muted" }, "No problems found.");
  const item = (severity, text) =>
    h("li", {}, badge(severity), " ", typeof text === "string" ? text : text.message || JSON.stringify(text));
  return h("div", { class: "findings" },
    h("ul", {}, errors.map((e) => item("fatal", e)), warnings.map((w) => item("warning", w))));
}

const CELL_CHARS = 240;

function cell(value) {
  const text = value !== null && typeof value === "object" ? JSON.stringify(value) : String(value ?? "");
  return text.length > CELL_CHARS ? `${text.slice(0, CELL_CHARS)}…` : text;
}

function previewTable(preview) {
  const columns = preview.columns || [];
  const rows = (preview.rows || []).map((row) => h("tr", {}, columns.map((c) => h("td", {}, cell(row[c])))));
  return table(columns, rows);
}

async function remove(ctx, page, dataset) {
  if (!window.confirm(`Delete dataset ${dataset.name || dataset.id}?`)) return;
  try {
    await ctx.api.delete(`/v1/datasets/${dataset.id}`);
    ctx.go("#/datasets");
  } catch (error) {
    page.prepend(errorBox(error));
  }
}
