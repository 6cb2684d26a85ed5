// One job: status and live progress, training curves drawn from the event stream
// (`?progress=true`), the audit, the evaluation report and the event log.

import { h, replace, table, num, pct, when, duration, badge, errorBox, link, card } from "../dom.js";
import { lineChart } from "../chart.js";
import { TERMINAL } from "./jobs.js";

const QUALITY = ["val_accuracy", "val_subset_accuracy", "val_macro_f1", "val_micro_f1"];
const MAX_EVENTS = 300;

export async function detail(ctx, page, [id]) {
  const state = { job: await ctx.api.get(`/v1/jobs/${id}`), points: new Map() };
  const parts = {
    head: h("div"),
    progress: h("div"),
    loss: h("div"),
    quality: h("div"),
    audit: h("div"),
    auto: h("div"),
    report: h("div"),
    events: h("ul"),
  };
  replace(page,
    parts.head,
    card("Progress", parts.progress),
    h("div", { class: "grid" }, card("Loss", parts.loss), card("Validation metrics", parts.quality)),
    parts.report,
    card("Audit", parts.audit),
    card("Chosen automatically", parts.auto),
    card("Events", h("div", { class: "events" }, parts.events)));

  let frame = 0;
  const draw = () => {
    frame = 0;
    renderHead(ctx, parts.head, state.job);
    renderProgress(parts.progress, state.job);
    renderCurves(parts, state.points);
    renderAudit(parts.audit, state.job.audit);
    renderAuto(parts.auto, state.job.auto);
  };
  const redraw = () => { if (!frame) frame = requestAnimationFrame(draw); };
  draw();

  const controller = new AbortController();
  let reportShown = false;
  const showReport = async () => {
    if (reportShown || state.job.status !== "succeeded") return;
    reportShown = true;
    try {
      renderReport(parts.report, await ctx.api.get(`/v1/jobs/${id}/report`), state.job);
    } catch (error) {
      replace(parts.report, card("Report", errorBox(error)));
    }
  };
  const onEvent = async ({ event, data }) => {
    if (event === "progress") {
      const moved = data.status !== state.job.status;
      Object.assign(state.job, { status: data.status, progress: data.progress, metrics: data.metrics });
      if (moved) state.job = { ...(await ctx.api.get(`/v1/jobs/${id}`)), progress: data.progress };
      for (const p of data.points) state.points.set(`${p.split}:${p.step}`, p);
    } else {
      parts.events.append(eventItem(data));
      if (parts.events.children.length > MAX_EVENTS) parts.events.firstChild.remove();
      if (TERMINAL.has(event) || event === "evaluating") {
        state.job = await ctx.api.get(`/v1/jobs/${id}`);
        await showReport();
      }
    }
    redraw();
  };
  ctx.api
    .stream(`/v1/jobs/${id}/events`, {
      query: { progress: "true" },
      onEvent: (event) => { onEvent(event).catch(() => {}); },
      isOver: () => TERMINAL.has(state.job.status),
      signal: controller.signal,
    })
    .catch((error) => page.prepend(errorBox(error)));
  await showReport();
  return () => { controller.abort(); cancelAnimationFrame(frame); };
}

function renderHead(ctx, node, job) {
  const cancel = TERMINAL.has(job.status) || job.cancel_requested ? null
    : h("button", { class: "danger", onclick: async (event) => {
      event.target.disabled = true;
      try { await ctx.api.post(`/v1/jobs/${job.id}/cancel`); } catch (error) { node.append(errorBox(error)); }
    } }, "Cancel");
  replace(node,
    h("h1", {}, h("span", { class: "mono" }, job.id), badge(job.status),
      job.cancel_requested && !TERMINAL.has(job.status) ? h("span", { class: "badge warning" }, "cancelling") : null),
    h("div", { class: "row" },
      h("span", {}, `${job.strategy.name} on ${job.base_model}`),
      h("span", { class: "muted" }, "dataset ", link(`#/datasets/${job.dataset_id}`, job.dataset_id)),
      job.sweep_id ? h("span", { class: "muted" }, "sweep ", link(`#/sweeps/${job.sweep_id}`, job.sweep_id)) : null,
      h("span", { class: "spacer" }),
      job.model_id ? h("a", { href: `#/models/${job.model_id}`, "data-testid": "model-link" }, "Try the model →") : null,
      cancel),
    job.error ? errorBox(new Error(`${job.error.code}: ${job.error.message}`)) : null);
}

function renderProgress(node, job) {
  const p = job.progress;
  const done = job.status === "succeeded";
  const bar = h("progress", { max: 100, value: done ? 100 : p.percent || 0, "aria-label": "progress" });
  const phase = p.phase ? `${p.phase}${p.phase_total ? ` ${p.phase_done ?? 0}/${p.phase_total}` : ""}` : "training";
  replace(node, bar, h("dl", { class: "kv", "data-testid": "progress" },
    h("dt", {}, "phase"), h("dd", {}, job.status === "queued" ? "waiting for a worker" : phase),
    h("dt", {}, "epoch"), h("dd", {}, num(p.epoch, 2)),
    h("dt", {}, "step"), h("dd", {}, `${num(p.step)} / ${num(p.total_steps)}`),
    h("dt", {}, "percent"), h("dd", { "data-testid": "percent" }, `${(done ? 100 : p.percent || 0).toFixed(1)}%`),
    h("dt", {}, "ETA"), h("dd", {}, TERMINAL.has(job.status) ? "—" : duration(p.eta_seconds)),
    h("dt", {}, "started"), h("dd", {}, when(job.started_at)),
    h("dt", {}, "finished"), h("dd", {}, when(job.finished_at))));
}

function series(points, split, key, name = key) {
  const out = [];
  for (const p of points.values()) {
    if (p.split === split && typeof p.values[key] === "number") out.push([p.step, p.values[key]]);
  }
  return { name, points: out.sort((a, b) => a[0] - b[0]) };
}

function renderCurves(parts, points) {
  replace(parts.loss, lineChart({
    series: [series(points, "train", "loss", "train loss"), series(points, "validation", "val_loss", "validation loss")],
    title: "loss by step", testid: "curve-loss",
  }));
  let present = QUALITY.filter((k) => [...points.values()].some((p) => typeof p.values[k] === "number"));
  // single-label micro-F1 equals accuracy: one line is enough
  if (present.includes("val_accuracy")) present = present.filter((k) => k !== "val_micro_f1");
  replace(parts.quality, lineChart({
    series: present.map((k) => series(points, "validation", k, k.replace("val_", ""))),
    title: "validation metrics by step", testid: "curve-quality",
  }));
}

function renderAudit(node, audit) {
  if (!audit || !audit.length) {
    replace(node, h("p", { class: "muted" }, "The audit found nothing to report (it runs when the job starts)."));
    return;
  }
  replace(node, h("div", { class: "findings", "data-testid": "audit" }, h("ul", {}, audit.map((f) =>
    h("li", {}, badge(f.severity), " ", h("strong", {}, f.code), " — ", f.message,
      f.suggestion ? h("div", { class: "muted" }, f.suggestion) : null)))));
}

function renderAuto(node, choices) {
  if (!choices || !choices.length) {
    replace(node, h("p", { class: "muted" }, "Every hyperparameter was given by the request."));
    return;
  }
  const shown = (value) => (value !== null && typeof value === "object" ? value.metric || JSON.stringify(value) : String(value));
  replace(node, table(["hyperparameter", "value", "why"], choices.map((c) =>
    h("tr", {}, h("td", { class: "mono" }, c.field), h("td", {}, shown(c.value)), h("td", { class: "muted" }, c.reason))),
  { "data-testid": "auto" }));
}

function eventItem(event) {
  return h("li", {}, h("span", { class: "muted" }, when(event.created_at), " "),
    h("strong", {}, event.kind), " ", event.message);
}

function renderReport(node, report, job) {
  const splits = [["validation", report.validation], ["test", report.test]].filter(([, r]) => r);
  replace(node, splits.map(([name, r]) => card(`Evaluation on ${name} (${num(r.examples)} examples)`,
    h("div", { class: "row" },
      ["accuracy", "subset_accuracy", "macro_f1", "micro_f1", "weighted_f1", "loss"]
        .filter((k) => typeof r[k] === "number")
        .map((k) => h("span", { class: "badge ok" }, `${k.replace("_", " ")} ${k === "loss" ? num(r[k]) : pct(r[k])}`))),
    h("div", { class: "grid" },
      r.confusion_matrix ? h("div", {}, h("h2", {}, "Confusion matrix"), confusion(r.confusion_matrix, name)) : null,
      r.per_class ? h("div", {}, h("h2", {}, "Per class"), perClass(r.per_class)) : null))),
    card("Selection", selection(report, job)),
    report.selection && report.selection.bakeoff ? card("Bake-off (auto)", bakeoff(report.selection.bakeoff)) : null);
}

function bakeoff(result) {
  const rows = result.runs.map((run) => h("tr", { class: run.won ? "winner" : null },
    h("td", {}, run.won ? h("strong", {}, run.name) : run.name),
    h("td", { class: "num" }, num(run.learning_rate)),
    h("td", { class: "num" }, run.skipped ? "—" : `${run.bakeoff_epochs} of ${run.epochs}`),
    h("td", { class: "num" }, run.metrics ? num(run.metrics[result.rank_metric]) : run.skipped),
    h("td", { class: "num" }, run.seconds === undefined ? "—" : `${run.seconds}s`)));
  return table(["candidate", "#rate", "#epochs (bake-off)", `#${result.rank_metric}`, "#time"], rows,
    { "data-testid": "bakeoff" });
}

function confusion(cm, split) {
  const head = h("tr", {}, h("th", {}, "true \\ predicted"), cm.labels.map((l) => h("th", {}, l)));
  const rows = cm.matrix.map((row, i) => h("tr", {}, h("th", {}, cm.labels[i]),
    row.map((count, j) => h("td", { class: i === j ? "diag" : null }, num(count)))));
  return h("table", { class: "cm", "data-testid": `confusion-${split}` }, h("thead", {}, head), h("tbody", {}, rows));
}

function perClass(rows) {
  return table(["label", "#precision", "#recall", "#f1", "#support"], rows.map((r) => h("tr", {},
    h("td", {}, r.label), h("td", { class: "num" }, num(r.precision, 3)), h("td", { class: "num" }, num(r.recall, 3)),
    h("td", { class: "num" }, num(r.f1, 3)), h("td", { class: "num" }, num(r.support)))), { "data-testid": "per-class" });
}

function selection(report, job) {
  const s = report.selection || job.selection;
  const cost = report.cost || {};
  if (!s) return h("p", { class: "muted" }, "No selection recorded.");
  return h("dl", { class: "kv" },
    h("dt", {}, "served weights"), h("dd", {}, `epoch ${num(s.selected_epoch, 2)}, step ${num(s.selected_step)} by ${s.metric} (${s.mode})`),
    h("dt", {}, "evaluations"), h("dd", {}, `${s.evaluations}${s.stopped_early ? ", stopped early" : ""}`),
    h("dt", {}, "train time"), h("dd", {}, duration(cost.train_seconds)),
    h("dt", {}, "trainable parameters"), h("dd", {}, num(cost.trainable_parameters)));
}
