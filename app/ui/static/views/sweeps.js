// Sweeps: the list, and one sweep's leaderboard (refreshed until the sweep is settled).

import { h, replace, table, num, when, duration, badge, link, card } from "../dom.js";

const REFRESH_MS = 3000;
const LIVE = new Set(["queued", "running"]);

export async function list(ctx, page) {
  const { data } = await ctx.api.get("/v1/sweeps", { limit: 100 });
  const rows = data.map((s) => h("tr", {},
    h("td", { class: "mono" }, link(`#/sweeps/${s.id}`, s.id)),
    h("td", {}, badge(s.status)),
    h("td", {}, s.base_model),
    h("td", {}, s.metric),
    h("td", { class: "num" }, num(s.leaderboard.length)),
    h("td", { class: "mono" }, s.model_id ? link(`#/models/${s.model_id}`, s.model_id) : "—"),
    h("td", {}, when(s.created_at))));
  replace(page, h("h1", {}, "Sweeps"), card(null, rows.length
    ? table(["sweep", "status", "base model", "metric", "#candidates", "promoted model", "created"], rows, { "data-testid": "sweeps" })
    : h("p", { class: "empty" }, "No sweeps yet: POST /v1/sweeps (or `tuneserve sweeps create`) tries strategies × learning rates on one split.")));
}

export async function detail(ctx, page, [id]) {
  let timer = null;
  const refresh = async () => {
    const sweep = await ctx.api.get(`/v1/sweeps/${id}`);
    render(page, sweep);
    if (LIVE.has(sweep.status) || sweep.leaderboard.some((c) => LIVE.has(c.status))) {
      timer = setTimeout(() => refresh().catch(() => {}), REFRESH_MS);
    }
  };
  await refresh();
  return () => clearTimeout(timer);
}

function render(page, sweep) {
  const rows = sweep.leaderboard.map((c) => h("tr", { class: c.job_id === sweep.winner_job_id ? "winner" : null },
    h("td", { class: "num" }, c.rank ?? "—"),
    h("td", {}, c.strategy),
    h("td", { class: "num" }, num(c.learning_rate)),
    h("td", {}, badge(c.status)),
    h("td", { class: "num" }, num(c.value)),
    h("td", { class: "num" }, num(c.selected_epoch, 2)),
    h("td", { class: "num" }, duration(c.wall_seconds)),
    h("td", { class: "num" }, num(c.trainable_parameters)),
    h("td", { class: "mono" }, link(`#/jobs/${c.job_id}`, c.job_id)),
    h("td", { class: "mono" }, c.model_id ? link(`#/models/${c.model_id}`, c.model_id) : c.error_code || "—")));
  replace(page,
    h("h1", {}, h("span", { class: "mono" }, sweep.id), badge(sweep.status)),
    h("div", { class: "row" },
      h("span", {}, `${sweep.base_model}, ranked by ${sweep.metric} (${sweep.mode})`),
      h("span", { class: "muted" }, "dataset ", link(`#/datasets/${sweep.dataset_id}`, sweep.dataset_id)),
      h("span", { class: "spacer" }),
      sweep.model_id ? h("a", { href: `#/models/${sweep.model_id}` }, "Try the promoted model →") : null),
    card("Leaderboard", table(
      ["#rank", "strategy", "#learning rate", "status", `#${sweep.metric}`, "#epoch", "#wall time", "#trainable", "job", "model"],
      rows, { "data-testid": "leaderboard" })));
}
