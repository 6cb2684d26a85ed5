"""The audit's checks: each turns a :class:`~app.audit.scan.Scan` of the job's data (and the
submission) into findings, in :data:`CHECKS` order.

=================  ===========================================================================
code               fires when
=================  ===========================================================================
class_imbalance    largest / smallest class (multi-label: label positives) >= IMBALANCE_RATIO;
                   a warning suggesting ``class_weights: "auto"``, a note when weights are set
leakage            validation rows whose normalised text also occurs in training (test rows:
                   in training or validation); fatal at LEAKAGE_FATAL_SHARE, else a warning
leakage_risk       no validation dataset and texts occurring more than once in the dataset
                   (the random split will likely put copies on both sides)
few_examples       classes with fewer than FEW_EXAMPLES examples (a note under contrastive);
                   without a validation dataset, classes with fewer than MIN_SPLIT_EXAMPLES
too_small          no validation dataset and the split would leave no validation rows: fatal
long_texts         more than LONG_TEXT_SHARE of a sample of texts exceed the token limit
=================  ===========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.audit.scan import Scan
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK, TEXT_CLASSIFICATION
from app.datasets.orm import Dataset
from app.jobs.schemas import AuditFinding, JobCreate

#: class_imbalance: largest class over smallest class (training examples) that warns. The
#: upload report's own note (app.datasets.report.IMBALANCE_RATIO) starts at 10:1.
IMBALANCE_RATIO = 3.0
#: leakage: share of evaluation rows also found in the data compared with that refuses the job
LEAKAGE_FATAL_SHARE = 0.5
#: few_examples: classes with fewer training examples than this are "few-shot"
FEW_EXAMPLES = 8
#: few_examples: without a validation dataset a class needs this many rows to be on both sides
MIN_SPLIT_EXAMPLES = 2
#: too_small: the fewest rows the worker splits into training and validation
MIN_SPLIT_ROWS = 4
#: long_texts: the share of sampled texts over the token limit that warns
LONG_TEXT_SHARE = 0.10


@dataclass(frozen=True)
class Context:
    """What every check reads."""

    body: JobCreate
    dataset: Dataset
    scan: Scan | None
    model_max: int | None  # the base model's own token limit, when known


def _finding(
    code: str, severity: str, message: str, suggestion: str | None, data: dict[str, Any]
) -> AuditFinding:
    return AuditFinding.model_validate(
        {"code": code, "severity": severity, "message": message, "suggestion": suggestion}
        | {"data": data}
    )


def _labels(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def check_class_imbalance(ctx: Context) -> list[AuditFinding]:
    if ctx.scan is None or len(ctx.scan.label_counts) < 2:
        return []
    counts = sorted(ctx.scan.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    (big, most), (small, least) = counts[0], counts[-1]
    ratio = most / max(least, 1)
    if ratio < IMBALANCE_RATIO:
        return []
    unit = "positive examples" if ctx.dataset.task in MULTILABEL_TASKS else "examples"
    weights = ctx.body.hyperparameters.class_weights
    message = (
        f"Classes are imbalanced: {big!r} has {most} training {unit}, {small!r} has {least} "
        f"({ratio:.1f}:1); "
        + (
            "a model can score well by mostly predicting the large classes."
            if weights is None
            else "class weights are on, so the loss counts the smaller classes more."
        )
    )
    suggestion = 'Weight the loss by class frequency: "hyperparameters": {"class_weights": "auto"}.'
    data: dict[str, Any] = {"ratio": round(ratio, 2), "class_weights": weights}
    data |= {"largest": {"label": big, "count": most}, "smallest": {"label": small, "count": least}}
    if weights is None:
        return [_finding("class_imbalance", "warning", message, suggestion, data)]
    return [_finding("class_imbalance", "info", message, None, data)]


def check_leakage(ctx: Context) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for o in ctx.scan.overlaps if ctx.scan else ():
        share = o.rows / o.of
        fatal = share >= LEAKAGE_FATAL_SHARE
        message = (
            f"{o.rows} of {o.of} {o.split} rows ({share:.0%}) also occur in the {o.against} "
            + (
                "data (the same image): the "
                if ctx.dataset.task in IMAGE_TASKS
                else "data (ignoring case and whitespace): the "
            )
            + (
                f"{o.split} numbers would be meaningless."
                if fatal
                else f"{o.split} scores will be optimistic."
            )
        )
        fix = f"Remove them from the {o.split} dataset, or pass another {o.split}_dataset_id."
        data: dict[str, Any] = {"split": o.split, "against": o.against, "dataset_id": o.dataset_id}
        data |= {"rows": o.rows, "of": o.of, "share": round(share, 4), "examples": [*o.examples]}
        out.append(_finding("leakage", "fatal" if fatal else "warning", message, fix, data))
    return out


def check_leakage_risk(ctx: Context) -> list[AuditFinding]:
    scan = ctx.scan
    if scan is None or ctx.body.validation_dataset_id is not None or not scan.duplicate_rows:
        return []
    what = "image" if ctx.dataset.task in IMAGE_TASKS else "text"
    message = (
        f"{scan.duplicate_rows} of {scan.rows} rows repeat the {what} of another row "
        f"({scan.repeated_texts} distinct {what}s occur more than once); the random validation "
        "split will likely put copies on both sides and inflate the validation scores."
    )
    fix = "Deduplicate the dataset before uploading, or pass a validation_dataset_id."
    data: dict[str, Any] = {
        "duplicate_rows": scan.duplicate_rows,
        "repeated_texts": scan.repeated_texts,
    }
    data |= {"rows": scan.rows, "examples": [*scan.duplicate_examples]}
    return [_finding("leakage_risk", "warning", message, fix, data)]


def check_few_examples(ctx: Context) -> list[AuditFinding]:
    if ctx.scan is None:
        return []
    counts = ctx.scan.label_counts
    few = sorted((n for n, c in counts.items() if c < FEW_EXAMPLES), key=lambda n: (counts[n], n))
    multilabel = ctx.dataset.task in MULTILABEL_TASKS
    kind, unit = ("labels", "positive examples") if multilabel else ("classes", "examples")
    out: list[AuditFinding] = []
    if few:
        found = (
            f"{len(few)} of {len(counts)} {kind} have fewer than {FEW_EXAMPLES} training "
            f"{unit} ({_labels(few)}; fewest: {counts[few[0]]})"
        )
        data: dict[str, Any] = {
            "threshold": FEW_EXAMPLES,
            "classes": {n: counts[n] for n in few[:100]},
        }
        if ctx.body.strategy.name == "contrastive":
            message = f"{found}; the contrastive strategy is made for few examples."
            out.append(_finding("few_examples", "info", message, None, data))
        else:
            message = f"{found}; fine-tuning on so few examples is unstable."
            fix = (
                "Try the few-shot strategy (SetFit-style contrastive pairs, then a head): "
                '"strategy": {"name": "contrastive"}, or add examples.'
                if ctx.dataset.task == TEXT_CLASSIFICATION  # the task contrastive trains
                else f"Add examples of these {kind}."
            )
            out.append(_finding("few_examples", "warning", message, fix, data))
    lone = [n for n in few if counts[n] < MIN_SPLIT_EXAMPLES]
    if lone and ctx.body.validation_dataset_id is None:
        message = (
            f"{len(lone)} {kind} have fewer than {MIN_SPLIT_EXAMPLES} {unit} ({_labels(lone)}): "
            "they cannot be in both the training and the validation split"
            + ("." if multilabel else ", and the split will not be stratified.")
        )
        fix = f"Add examples of these {kind}, or pass a validation_dataset_id."
        data = {"threshold": MIN_SPLIT_EXAMPLES, "classes": {n: counts[n] for n in lone[:100]}}
        out.append(_finding("few_examples", "warning", message, fix, data))
    return out


def check_too_small(ctx: Context) -> list[AuditFinding]:
    if ctx.body.validation_dataset_id is not None:
        return []
    rows = ctx.scan.rows if ctx.scan else ctx.dataset.num_rows
    fraction = ctx.body.hyperparameters.validation_fraction
    held_out = round(rows * fraction)
    if rows >= MIN_SPLIT_ROWS and held_out >= 1:
        return []
    why = (
        f"at least {MIN_SPLIT_ROWS} are needed to split off a validation set"
        if rows < MIN_SPLIT_ROWS
        else f"holding out validation_fraction {fraction} of them leaves {held_out} rows"
    )
    message = f"The dataset has {rows} rows; {why}, so there would be nothing to validate on."
    fix = (
        "Upload more rows, raise hyperparameters.validation_fraction, or pass a "
        "validation_dataset_id."
    )
    data: dict[str, Any] = {
        "rows": rows,
        "validation_fraction": fraction,
        "validation_rows": held_out,
    }
    return [_finding("too_small", "fatal", message, fix, data)]


def check_long_texts(ctx: Context) -> list[AuditFinding]:
    if ctx.scan is None or not ctx.scan.token_counts:
        return []
    max_length, model_max = ctx.body.hyperparameters.max_length, ctx.model_max
    limit = min(max_length, model_max) if model_max else max_length
    counts = sorted(ctx.scan.token_counts)
    over = sum(1 for c in counts if c > limit)
    share = over / len(counts)
    if share <= LONG_TEXT_SHARE:
        return []
    p90 = counts[math.ceil(0.9 * len(counts)) - 1]
    what = "text pairs" if ctx.dataset.task == PAIR_TASK else "texts"
    how = "" if ctx.scan.counting == "tokenizer" else " (estimated from word counts)"
    hp = ctx.body.hyperparameters
    read = {
        "truncate": "The rest of each is cut off.",
        "head_tail": "Each is read as its first and last tokens (long_text head_tail); the "
        "middle is left out.",
        "chunks": f"Each is read in up to {hp.max_chunks} windows of {limit} tokens "
        "(long_text chunks); what lies beyond is cut off.",
    }[hp.long_text if ctx.dataset.task != PAIR_TASK else "truncate"]
    message = (
        f"{share:.0%} of {len(counts)} sampled training {what} are longer than the {limit}-token "
        f"limit{how}; the 90th percentile is {p90} tokens. {read}"
    )
    if model_max is None or max_length < model_max:
        bigger = min(model_max or 8192, max(64, math.ceil(p90 / 64) * 64))
        fix = (
            f'Raise the limit: "hyperparameters": {{"max_length": {bigger}}}'
            + (f" (the model takes up to {model_max} tokens)" if model_max else "")
            + "; longer inputs cost memory and time."
        )
    else:
        fix = (
            f"The model takes at most {model_max} tokens, so the tail of long {what} will be "
            "truncated: put what matters first, or split long texts."
            if ctx.dataset.task == PAIR_TASK
            else f"The model takes at most {model_max} tokens: to read more of each text, "
            '"hyperparameters": {"long_text": "chunks"} averages the model over up to '
            "`max_chunks` windows (costs as many times the compute)."
        )
    data: dict[str, Any] = {"limit": limit, "max_length": max_length, "model_max_length": model_max}
    data |= {"sampled": len(counts), "over_limit": over, "share": round(share, 4), "p90": p90}
    data |= {"counting": ctx.scan.counting, "cut_texts": ctx.scan.cut_texts}
    return [_finding("long_texts", "warning", message, fix, data)]


CHECKS: tuple[Callable[[Context], list[AuditFinding]], ...] = (
    check_class_imbalance,
    check_leakage,
    check_leakage_risk,
    check_few_examples,
    check_too_small,
    check_long_texts,
)
