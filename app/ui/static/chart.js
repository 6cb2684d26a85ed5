// A small SVG line chart: series of [x, y] points over a shared x axis (the training step).

const SVG = "http://www.w3.org/2000/svg";
const W = 560;
const H = 240;
const M = { left: 52, right: 14, top: 14, bottom: 46 };

function el(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function ticks(lo, hi, count) {
  if (hi === lo) return [lo];
  const raw = (hi - lo) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * step).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi + nice * 1e-9; t += nice) out.push(+t.toPrecision(12));
  return out;
}

function label(value) {
  if (Math.abs(value) >= 1000) return value.toLocaleString("en");
  return String(+value.toPrecision(3));
}

// series: [{name, points: [[x, y], ...]}]; returns an <svg> with data-points = all points
export function lineChart({ series, xLabel = "step", title = "", testid = null }) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const shown = series.filter((s) => s.points.length);
  const total = shown.reduce((n, s) => n + s.points.length, 0);
  svg.setAttribute("data-points", String(total));
  if (testid) svg.setAttribute("data-testid", testid);
  svg.append(el("title", {}, title));
  if (!total) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no points yet"));
    return svg;
  }
  const xs = shown.flatMap((s) => s.points.map((p) => p[0]));
  const ys = shown.flatMap((s) => s.points.map((p) => p[1]));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);

  for (const t of ticks(y0, y1, 4)) {
    svg.append(el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: py(t), y2: py(t) }));
    svg.append(el("text", { x: M.left - 6, y: py(t) + 4, "text-anchor": "end" }, label(t)));
  }
  for (const t of ticks(x0, x1, 6)) {
    svg.append(el("text", { x: px(t), y: H - M.bottom + 16, "text-anchor": "middle" }, label(t)));
  }
  svg.append(el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  svg.append(el("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  svg.append(el("text", { x: W - M.right, y: H - M.bottom + 30, "text-anchor": "end" }, xLabel));

  series.forEach((s, i) => {
    const cls = `s${i % 4}`;
    if (s.points.length) {
      const path = s.points.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
      svg.append(el("polyline", { class: `line ${cls}`, points: path, "data-series": s.name }));
      if (s.points.length <= 60) {
        for (const p of s.points) svg.append(el("circle", { class: cls, cx: px(p[0]), cy: py(p[1]), r: 2.5 }));
      }
    }
    const lx = M.left + i * 130;
    svg.append(el("rect", { class: cls, x: lx, y: H - 14, width: 12, height: 4 }));
    svg.append(el("text", { x: lx + 16, y: H - 9 }, s.name));
  });
  return svg;
}
