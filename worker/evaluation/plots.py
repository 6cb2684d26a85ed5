"""A training report's plots as PNG files: curves, confusion matrix, reliability diagram.

Headless and free of global state: each plot is a ``matplotlib.figure.Figure`` drawn by its
own ``FigureCanvasAgg`` (no pyplot, no backend switch), so rendering is safe in any thread.
Each file is written atomically (``app.atomic``: ``.tmp-*`` in the output directory, fsynced,
renamed into place).

The report is read tolerantly: a plot whose data is missing is skipped, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.atomic import atomic_file
from app.contract.tasks import MULTILABEL_TASKS

PLOT_NAMES = ("curves", "confusion_matrix", "calibration")
#: at most this many labels are drawn; beyond it the best-supported ones are shown
MAX_LABELS = 50
_NAME_CHARS = 20
_DPI = 100


def render_plots(report: Mapping[str, Any], out_dir: Path) -> list[str]:
    """Write ``<name>.png`` into ``out_dir`` for each plot whose data the report has.

    Returns the names written (a subsequence of ``PLOT_NAMES``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    split_name, split = _split(report)
    multilabel = report.get("task") in MULTILABEL_TASKS or "label_confusion" in split
    figures = {
        "curves": _curves(report),
        "confusion_matrix": _confusion(split, split_name),
        "calibration": _reliability(split, split_name, multilabel=multilabel),
    }
    written = []
    for name in PLOT_NAMES:
        figure = figures[name]
        if figure is not None:
            _save_atomic(figure, out_dir / f"{name}.png")
            written.append(name)
    return written


def _save_atomic(figure: Figure, path: Path) -> None:
    with atomic_file(path, suffix=".png") as handle:
        FigureCanvasAgg(figure).print_png(handle)


def _split(report: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The split the per-label plots show: validation, else test, else nothing."""
    for name in ("validation", "test"):
        split = report.get(name)
        if isinstance(split, Mapping):
            return name, split
    return "validation", {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _short(name: Any) -> str:
    text = str(name)
    return text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 1] + "…"


def _top_by_support(support: Sequence[float]) -> tuple[np.ndarray, str]:
    """Indices of the labels to draw (label order kept) and a title note when capped."""
    count = len(support)
    if count <= MAX_LABELS:
        return np.arange(count), ""
    order = np.argsort(-np.asarray(support, dtype=np.float64), kind="stable")
    return np.sort(order[:MAX_LABELS]), f" (top {MAX_LABELS} of {count} labels by support)"


def _label_axis(axes: Axes, names: list[str], *, axis: Literal["x", "y"]) -> None:
    ticks = np.arange(len(names))
    short = [_short(name) for name in names]
    if axis == "x":
        axes.set_xticks(ticks, short, rotation=45, ha="right", rotation_mode="anchor")
    else:
        axes.set_yticks(ticks, short)
    if len(names) > 20:
        axes.tick_params(axis=axis, labelsize=6)


def _curves(report: Mapping[str, Any]) -> Figure | None:
    history = [row for row in report.get("history") or [] if isinstance(row, Mapping)]
    if not history:
        return None
    by_epoch = all(_number(row.get("epoch")) is not None for row in history)
    x_key = "epoch" if by_epoch else "step"
    keys: list[str] = sorted({key for row in history for key in row if isinstance(key, str)})
    losses = [key for key in ("train_loss", "val_loss") if key in keys]
    scores = [key for key in keys if key.startswith("val_") and key != "val_loss"]
    series = {
        key: [
            (x, y)
            for row in history
            if (x := _number(row.get(x_key))) is not None
            and (y := _number(row.get(key))) is not None
        ]
        for key in losses + scores
    }
    panels = [
        (title, [key for key in group if series[key]])
        for title, group in (("loss", losses), ("validation metrics", scores))
    ]
    panels = [(title, group) for title, group in panels if group]
    if not panels:
        return None
    figure = Figure(figsize=(6 * len(panels), 4.5), dpi=_DPI, layout="constrained")
    selection = report.get("selection")
    selection = selection if isinstance(selection, Mapping) else {}
    selected = _number(selection.get("selected_epoch" if by_epoch else "selected_step"))
    for index, (title, group) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for key in group:
            xs, ys = zip(*series[key], strict=True)
            axes.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=key)
        if selected is not None:
            axes.axvline(selected, linestyle="--", color="grey", linewidth=1)
            criterion = selection.get("metric")
            note = f"selected {x_key} {selected:g}" + (f" ({criterion})" if criterion else "")
            axes.text(
                selected,
                0.98,
                f" {note}",
                transform=axes.get_xaxis_transform(),
                va="top",
                ha="left",
                fontsize=8,
                color="dimgrey",
            )
        axes.set_xlabel(x_key)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="best")
    return figure


def _confusion(split: Mapping[str, Any], split_name: str) -> Figure | None:
    matrix_part = split.get("confusion_matrix")
    if isinstance(matrix_part, Mapping):
        return _heat_map(matrix_part, split_name)
    per_class = split.get("per_class")
    if isinstance(per_class, list) and per_class:
        return _label_bars(per_class, split_name)
    return None


def _heat_map(part: Mapping[str, Any], split_name: str) -> Figure | None:
    names = list(part.get("labels") or [])
    try:
        counts = np.asarray(part.get("matrix"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if not names or counts.shape != (len(names), len(names)):
        return None
    row_totals = counts.sum(axis=1)
    keep, note = _top_by_support(row_totals)
    shown = counts[np.ix_(keep, keep)]
    totals = row_totals[keep, None]
    colour = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
    size = min(max(5.0, 0.35 * len(keep) + 2.5), 22.0)
    figure = Figure(figsize=(size + 1.5, size), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(colour, cmap="Blues", vmin=0.0, vmax=1.0)
    font = 9 if len(keep) <= 12 else 7 if len(keep) <= 25 else 5
    for (row, col), count in np.ndenumerate(shown):
        if count:
            dark = colour[row, col] > 0.5
            axes.text(
                col,
                row,
                f"{int(count)}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
            )
    kept_names = [names[i] for i in keep]
    _label_axis(axes, kept_names, axis="x")
    _label_axis(axes, kept_names, axis="y")
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(f"confusion matrix, {split_name}{note}")
    figure.colorbar(image, ax=axes, label="fraction of the true label's examples", shrink=0.8)
    return figure


def _label_bars(per_class: list[Any], split_name: str) -> Figure | None:
    rows = [row for row in per_class if isinstance(row, Mapping)]
    if not rows:
        return None
    keep, note = _top_by_support([_number(row.get("support")) or 0.0 for row in rows])
    rows = [rows[i] for i in keep]
    width = min(max(6.0, 0.45 * len(rows) + 2.0), 30.0)
    figure = Figure(figsize=(width, 4.8), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    for offset, key in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1"), strict=True):
        values = [_number(row.get(key)) or 0.0 for row in rows]
        axes.bar(positions + offset, values, width=0.27, label=key)
    thresholds = {_number(row.get("threshold")) for row in rows} - {None}
    cut = f"threshold {thresholds.pop():g}" if len(thresholds) == 1 else "tuned thresholds"
    _label_axis(axes, [row.get("label", "?") for row in rows], axis="x")
    axes.set_ylim(0.0, 1.15)  # headroom for the legend
    axes.set_ylabel("score")
    axes.set_title(f"per-label scores at {cut}, {split_name}{note}")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper right", ncols=3)
    return figure


def _bins(bins: Any) -> list[tuple[float, float, float]]:
    """``(lower, upper, accuracy)`` of the non-empty bins."""
    out = []
    for row in bins if isinstance(bins, list) else []:
        if not isinstance(row, Mapping):
            continue
        lower, upper = _number(row.get("lower")), _number(row.get("upper"))
        accuracy = _number(row.get("accuracy"))
        if lower is not None and upper is not None and accuracy is not None:
            out.append((lower, upper, accuracy))
    return out


def _reliability(split: Mapping[str, Any], split_name: str, *, multilabel: bool) -> Figure | None:
    part = split.get("calibration")
    if not isinstance(part, Mapping):
        return None
    temperature = _number(part.get("temperature"))
    series = [("raw", _bins(part.get("bins_raw") or part.get("bins")), part.get("ece_raw"))]
    if temperature is not None:
        series.append((f"temperature {temperature:.2f}", _bins(part.get("bins")), part.get("ece")))
    series = [entry for entry in series if entry[1]]
    if not series:
        return None
    figure = Figure(figsize=(5.5, 5.5), dpi=_DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    share = 1.0 / len(series)
    for index, (name, bins, ece) in enumerate(series):
        lower, upper, accuracy = (np.asarray(column) for column in zip(*bins, strict=True))
        width = (upper - lower) * share
        ece_value = _number(ece)
        label = name if ece_value is None else f"{name} (ECE {ece_value:.3f})"
        axes.bar(
            lower + index * width,
            accuracy,
            width=width,
            align="edge",
            alpha=0.7,
            edgecolor="black",
            linewidth=0.5,
            label=label,
        )
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("predicted probability" if multilabel else "confidence (top label)")
    axes.set_ylabel("fraction positive" if multilabel else "accuracy")
    axes.set_title(f"reliability diagram, {split_name}")
    axes.legend(fontsize=8, loc="upper left")
    return figure
