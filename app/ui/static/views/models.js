// Models: the list, and one model with its metrics, a try-it box (texts, or image files for
// an image model) and the export download.

import { h, replace, table, num, pct, when, bytes, errorBox, link, card } from "../dom.js";
import { headlineMetric } from "./jobs.js";

export async function list(ctx, page) {
  const { data } = await ctx.api.get("/v1/models", { limit: 100 });
  const rows = data.map((m) => {
    const [, value] = headlineMetric(m.metrics);
    return h("tr", {},
      h("td", { class: "mono" }, link(`#/models/${m.id}`, m.id)),
      h("td", {}, m.base_model), h("td", {}, m.task), h("td", {}, m.strategy),
      h("td", { class: "num" }, pct(value)), h("td", { class: "num" }, bytes(m.size_bytes)),
      h("td", {}, when(m.created_at)));
  });
  replace(page, h("h1", {}, "Models"), card(null, rows.length
    ? table(["model", "base model", "task", "strategy", "#val accuracy", "#size", "created"], rows, { "data-testid": "models" })
    : h("p", { class: "empty" }, "No models yet: a job that succeeds registers one.")));
}

export async function detail(ctx, page, [id]) {
  const model = await ctx.api.get(`/v1/models/${id}`);
  const metrics = Object.entries(model.metrics || {}).filter(([, v]) => typeof v === "number");
  replace(page,
    h("h1", {}, h("span", { class: "mono" }, model.id)),
    h("div", { class: "row" },
      h("span", {}, `${model.strategy} on ${model.base_model} (${model.task})`),
      h("span", { class: "muted" }, "trained by ", link(`#/jobs/${model.job_id}`, model.job_id)),
      h("span", { class: "spacer" }), exportButton(ctx, model)),
    h("div", { class: "grid" },
      card("Try it", tryIt(ctx, model)),
      card("Metrics", h("dl", { class: "kv" }, metrics.map(([k, v]) => [h("dt", {}, k), h("dd", {}, num(v))])),
        h("p", { class: "muted" }, `labels: ${model.labels.join(", ")}`))));
}

function tryIt(ctx, model) {
  const images = model.task.startsWith("image-");
  const pair = model.task === "text-pair-classification";
  const result = h("div", { "data-testid": "predictions" });
  const topK = h("input", { type: "number", min: 1, max: Math.max(1, model.labels.length), value: Math.min(3, model.labels.length), "aria-label": "top k" });
  const input = images
    ? h("input", { type: "file", accept: "image/*", multiple: true, "aria-label": "images" })
    : h("textarea", { "aria-label": "inputs", placeholder: pair
      ? "one pair per line: first text<TAB>second text" : "one text per line" });
  const thumbs = h("div", { class: "thumbs" });
  if (images) input.addEventListener("change", () => showThumbs(thumbs, input.files));
  const form = h("form", { class: "stack", "aria-label": "Try it" },
    h("label", {}, images ? "Images" : "Texts", input), thumbs,
    h("div", { class: "row" }, h("label", {}, "top k", topK), h("button", { type: "submit" }, "Predict")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(result, h("p", { class: "muted" }, "Predicting…"));
    try {
      let answer;
      let shown;
      if (images) {
        const data = new FormData();
        for (const file of input.files) data.append("files", file);
        data.append("top_k", topK.value);
        shown = [...input.files].map((f) => f.name);
        answer = await ctx.api.upload(`/v1/models/${model.id}/predict`, data);
      } else {
        const lines = input.value.split("\n").map((l) => l.trim()).filter(Boolean);
        const inputs = pair ? lines.map((l) => l.split("\t")) : lines;
        shown = lines;
        answer = await ctx.api.post(`/v1/models/${model.id}/predict`, { inputs, top_k: Number(topK.value) });
      }
      replace(result, predictions(shown, answer.predictions));
    } catch (error) {
      replace(result, errorBox(error));
    }
  });
  return form;
}

function showThumbs(node, files) {
  for (const img of node.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  replace(node, [...files].slice(0, 16).map((f) => h("img", { src: URL.createObjectURL(f), alt: f.name })));
}

function predictions(inputs, predicted) {
  const rows = predicted.map((p, i) => h("tr", {},
    h("td", {}, inputs[i] ?? ""),
    h("td", { "data-testid": "predicted-label" }, h("strong", {}, p.labels ? p.labels.join(", ") || "(none)" : p.label)),
    h("td", { class: "num" }, num(p.score, 3)),
    h("td", { class: "muted" }, (p.top_k || []).map((t) => `${t.label} ${num(t.score, 3)}`).join(" · "))));
  return table(["input", "label", "#score", "top k"], rows);
}

function exportButton(ctx, model) {
  const status = h("span", { class: "muted" });
  const button = h("button", { class: "secondary", onclick: async () => {
    button.disabled = true;
    try {
      const { status: code, response, blob } = await ctx.api.blob(`/v1/models/${model.id}/export`);
      if (code === 202) {
        const wait = response.headers.get("Retry-After") || "a few";
        status.textContent = `A worker is building the export; try again in ${wait} s.`;
        return;
      }
      const a = h("a", { href: URL.createObjectURL(blob), download: `${model.id}.tar.gz` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      status.textContent = "";
    } catch (error) {
      status.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  } }, "Export (.tar.gz)");
  return h("span", { class: "row" }, status, button);
}
