"""The pre-flight audit of a job's data at submit (``POST /v1/jobs``).

:func:`audit_job` reads the training dataset (and the validation and test datasets, if given)
once each from the canonical Parquet and returns :class:`~app.jobs.schemas.AuditFinding` s:

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

Texts are compared normalised (stripped, whitespace runs collapsed, casefolded; for text
pairs the key is the pair) by 16-byte BLAKE2b digests, so memory stays near 100 bytes a row.
A check that fails unexpectedly is logged and skipped: the audit never fails a submit on odd
data, only on a fatal finding (:class:`AuditFailed`, 422 ``audit_failed``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from app.base_models.registry import BaseModelInfo
from app.config import Settings
from app.contract.tasks import LABELED_TEXT_TASKS, MULTILABEL_TASK, PAIR_TASK, TEXT_CLASSIFICATION
from app.datasets.orm import Dataset
from app.errors import InvalidInput
from app.jobs.schemas import AuditFinding, JobCreate
from app.storage import Storage

logger = logging.getLogger(__name__)

#: class_imbalance: largest class over smallest class (training examples) that warns. The
#: upload report's own note (app.datasets.report.IMBALANCE_RATIO) starts at 10:1.
IMBALANCE_RATIO = 3.0
#: leakage: share of evaluation rows also found in the data compared with that refuses the job
LEAKAGE_FATAL_SHARE = 0.5
#: leakage, leakage_risk: example texts shown, each cut to this many characters
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 80
#: few_examples: classes with fewer training examples than this are "few-shot"
FEW_EXAMPLES = 8
#: few_examples: without a validation dataset a class needs this many rows to be on both sides
MIN_SPLIT_EXAMPLES = 2
#: too_small: the fewest rows the worker splits into training and validation
MIN_SPLIT_ROWS = 4
#: long_texts: texts sampled (seeded) for token counts, and the share over the limit that warns
TOKEN_SAMPLE = 2000
TOKEN_SAMPLE_SEED = 0
LONG_TEXT_SHARE = 0.10
#: long_texts: without the model's tokenizer.json, tokens ~ this x whitespace words (+ specials)
TOKENS_PER_WORD = 1.3
#: long_texts: bounds on the counting work: each sampled text is cut to this many characters
#: per token the model can take, and the sample to TOKEN_CHAR_BUDGET characters in all
CHARS_PER_TOKEN_CAP = 16
TOKEN_CHAR_BUDGET = 2_000_000
#: a tokenizer's model_max_length at or above this means "no limit" (transformers uses 1e30)
NO_LIMIT = 1_000_000
_BATCH_ROWS = 8192


class AuditFailed(InvalidInput):
    """A fatal finding: the job would be meaningless. Details: ``{"findings": [...]}``."""

    code = "audit_failed"


# --- reading the data: one pass per file ------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    """Rows of ``split`` whose text also occurs in ``against``."""

    split: str
    against: str
    dataset_id: str
    rows: int
    of: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Scan:
    rows: int
    label_counts: dict[str, int]
    duplicate_rows: int  # rows whose normalised text repeats an earlier row's
    repeated_texts: int  # distinct normalised texts occurring more than once
    duplicate_examples: tuple[str, ...]
    overlaps: tuple[Overlap, ...]
    token_counts: tuple[int, ...]
    counting: str  # "tokenizer" or "estimate"
    cut_texts: int  # sampled texts cut to the character cap before counting


@dataclass(frozen=True)
class _Source:
    dataset_id: str
    path: Path


@dataclass(frozen=True)
class _ScanRequest:
    task: str
    train: _Source
    validation: _Source | None
    test: _Source | None
    tokenizer_file: Path | None
    char_cap: int


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _digest(text: str, pair: str | None) -> bytes:
    key = _normal(text) if pair is None else f"{_normal(text)}\x00{_normal(pair)}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _shown(text: str, pair: str | None) -> str:
    full = text if pair is None else f"{text} || {pair}"
    full = " ".join(full.split())
    return full if len(full) <= EXAMPLE_CHARS else full[: EXAMPLE_CHARS - 1] + "…"


def _rows(
    path: Path, *, pair: bool, label: str | None = None, counts: Counter[str] | None = None
) -> Iterator[tuple[str, str | None]]:
    """``(text, text_pair)`` of each row, in order; label occurrences added to ``counts``."""
    columns = ["text", *(["text_pair"] if pair else []), *([label] if label else [])]
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            if label and counts is not None:
                values = batch.column(label)
                if label == "labels":
                    values = pc.list_flatten(values)
                for item in pc.value_counts(values).to_pylist():
                    if item["values"] is not None:
                        counts[str(item["values"])] += int(item["counts"])
            texts = batch.column("text").to_pylist()
            pairs = batch.column("text_pair").to_pylist() if pair else [None] * len(texts)
            for text, other in zip(texts, pairs, strict=True):
                yield str(text or ""), (str(other or "") if pair else None)


def _overlaps(
    source: _Source, split: str, *, pair: bool, against: list[tuple[str, set[bytes]]], keep: bool
) -> tuple[set[bytes], list[Overlap]]:
    own: set[bytes] = set()
    hits = [0] * len(against)
    examples: list[list[str]] = [[] for _ in against]
    rows = 0
    for text, other in _rows(source.path, pair=pair):
        rows += 1
        key = _digest(text, other)
        for i, (_, keys) in enumerate(against):
            if key in keys:
                hits[i] += 1
                shown = _shown(text, other)
                if len(examples[i]) < MAX_EXAMPLES and shown not in examples[i]:
                    examples[i].append(shown)
        if keep:
            own.add(key)
    found = [
        Overlap(split, name, source.dataset_id, hits[i], rows, tuple(examples[i]))
        for i, (name, _) in enumerate(against)
        if hits[i]
    ]
    return own, found


def _scan(req: _ScanRequest) -> Scan:
    """One pass over each file: label counts, duplicates, overlaps, a token-count sample."""
    pair = req.task == PAIR_TASK
    label = "labels" if req.task == MULTILABEL_TASK else "label"
    with pq.ParquetFile(req.train.path) as pf:
        n = pf.metadata.num_rows
    order = random.Random(TOKEN_SAMPLE_SEED).sample(range(n), min(n, TOKEN_SAMPLE))
    rank = {row: i for i, row in enumerate(order)}
    sample: dict[int, tuple[str, str | None]] = {}
    counts: Counter[str] = Counter()
    seen: set[bytes] = set()
    repeated: set[bytes] = set()
    dup_examples: list[str] = []
    duplicates = cut = 0
    rows = _rows(req.train.path, pair=pair, label=label, counts=counts)
    for index, (text, other) in enumerate(rows):
        key = _digest(text, other)
        if key in seen:
            duplicates += 1
            repeated.add(key)
            if len(dup_examples) < MAX_EXAMPLES and _shown(text, other) not in dup_examples:
                dup_examples.append(_shown(text, other))
        else:
            seen.add(key)
        if index in rank:
            cut += len(text) > req.char_cap or len(other or "") > req.char_cap
            sample[rank[index]] = (
                text[: req.char_cap],
                None if other is None else other[: req.char_cap],
            )
    overlaps: list[Overlap] = []
    val_keys: set[bytes] = set()
    if req.validation is not None:
        val_keys, found = _overlaps(
            req.validation,
            "validation",
            pair=pair,
            against=[("training", seen)],
            keep=req.test is not None,
        )
        overlaps += found
    if req.test is not None:
        against = [("training", seen)] + ([("validation", val_keys)] if req.validation else [])
        overlaps += _overlaps(req.test, "test", pair=pair, against=against, keep=False)[1]
    token_counts, counting = _count_tokens(_within_budget(sample), req.tokenizer_file)
    return Scan(
        rows=n,
        label_counts=dict(counts),
        duplicate_rows=duplicates,
        repeated_texts=len(repeated),
        duplicate_examples=tuple(dup_examples),
        overlaps=tuple(overlaps),
        token_counts=tuple(token_counts),
        counting=counting,
        cut_texts=cut,
    )


def _within_budget(sample: dict[int, tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """The sample in its random order, up to TOKEN_CHAR_BUDGET characters."""
    kept: list[tuple[str, str | None]] = []
    chars = 0
    for _, (text, other) in sorted(sample.items()):
        chars += len(text) + len(other or "")
        if chars > TOKEN_CHAR_BUDGET and kept:
            break
        kept.append((text, other))
    return kept


@functools.lru_cache(maxsize=4)
def _tokenizer(path: Path, mtime_ns: int) -> Any:
    from tokenizers import Tokenizer  # the Rust tokenizer: light, no torch

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _count_tokens(
    texts: list[tuple[str, str | None]], tokenizer_file: Path | None
) -> tuple[list[int], str]:
    """Tokens per text (with special tokens) by the model's tokenizer, or else estimated."""
    if tokenizer_file is not None and texts:
        try:
            tokenizer = _tokenizer(tokenizer_file, tokenizer_file.stat().st_mtime_ns)
            inputs = [text if other is None else (text, other) for text, other in texts]
            return [len(e.ids) for e in tokenizer.encode_batch(inputs)], "tokenizer"
        except Exception:
            logger.exception("audit: cannot count tokens with %s; estimating", tokenizer_file)
    return [
        math.ceil(TOKENS_PER_WORD * (len(text.split()) + len((other or "").split())))
        + (2 if other is None else 3)
        for text, other in texts
    ], "estimate"


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
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


def check_class_imbalance(ctx: _Context) -> list[AuditFinding]:
    if ctx.scan is None or len(ctx.scan.label_counts) < 2:
        return []
    counts = sorted(ctx.scan.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    (big, most), (small, least) = counts[0], counts[-1]
    ratio = most / max(least, 1)
    if ratio < IMBALANCE_RATIO:
        return []
    unit = "positive examples" if ctx.dataset.task == MULTILABEL_TASK else "examples"
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


def check_leakage(ctx: _Context) -> list[AuditFinding]:
    out: list[AuditFinding] = []
    for o in ctx.scan.overlaps if ctx.scan else ():
        share = o.rows / o.of
        fatal = share >= LEAKAGE_FATAL_SHARE
        message = (
            f"{o.rows} of {o.of} {o.split} rows ({share:.0%}) also occur in the {o.against} "
            "data (ignoring case and whitespace): the "
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


def check_leakage_risk(ctx: _Context) -> list[AuditFinding]:
    scan = ctx.scan
    if scan is None or ctx.body.validation_dataset_id is not None or not scan.duplicate_rows:
        return []
    message = (
        f"{scan.duplicate_rows} of {scan.rows} rows repeat the text of another row "
        f"({scan.repeated_texts} distinct texts occur more than once); the random validation "
        "split will likely put copies on both sides and inflate the validation scores."
    )
    fix = "Deduplicate the dataset before uploading, or pass a validation_dataset_id."
    data: dict[str, Any] = {
        "duplicate_rows": scan.duplicate_rows,
        "repeated_texts": scan.repeated_texts,
    }
    data |= {"rows": scan.rows, "examples": [*scan.duplicate_examples]}
    return [_finding("leakage_risk", "warning", message, fix, data)]


def check_few_examples(ctx: _Context) -> list[AuditFinding]:
    if ctx.scan is None:
        return []
    counts = ctx.scan.label_counts
    few = sorted((n for n, c in counts.items() if c < FEW_EXAMPLES), key=lambda n: (counts[n], n))
    multilabel = ctx.dataset.task == MULTILABEL_TASK
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


def check_too_small(ctx: _Context) -> list[AuditFinding]:
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


def check_long_texts(ctx: _Context) -> list[AuditFinding]:
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
    message = (
        f"{share:.0%} of {len(counts)} sampled training {what} are longer than the {limit}-token "
        f"limit{how}; the 90th percentile is {p90} tokens. The rest of each is cut off."
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
        )
    data: dict[str, Any] = {"limit": limit, "max_length": max_length, "model_max_length": model_max}
    data |= {"sampled": len(counts), "over_limit": over, "share": round(share, 4), "p90": p90}
    data |= {"counting": ctx.scan.counting, "cut_texts": ctx.scan.cut_texts}
    return [_finding("long_texts", "warning", message, fix, data)]


CHECKS: tuple[Callable[[_Context], list[AuditFinding]], ...] = (
    check_class_imbalance,
    check_leakage,
    check_leakage_risk,
    check_few_examples,
    check_too_small,
    check_long_texts,
)


# --- entry point --------------------------------------------------------------------------


def model_max_length(base: BaseModelInfo) -> int | None:
    """The model's own token limit: max_position_embeddings, or the tokenizer's
    model_max_length when that is smaller and a real limit."""
    limits = [base.max_length] if isinstance(base.max_length, int) and base.max_length > 0 else []
    try:
        value = json.loads((base.path / "tokenizer_config.json").read_text())["model_max_length"]
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < NO_LIMIT:
        limits.append(value)
    return min(limits) if limits else None


def _source(session: Session, storage: Storage, dataset_id: str | None) -> _Source | None:
    ds = session.get(Dataset, dataset_id) if dataset_id else None
    return None if ds is None else _Source(ds.id, storage.path(ds.storage_path))


def audit_job(
    session: Session,
    *,
    body: JobCreate,
    dataset: Dataset,
    base: BaseModelInfo,
    settings: Settings,
) -> list[AuditFinding]:
    """The findings for a validated submission, in CHECKS order. Raises nothing but
    :class:`AuditFailed` when a finding is fatal."""
    if dataset.task not in LABELED_TEXT_TASKS:
        return []
    model_max: int | None = None
    scan: Scan | None = None
    try:
        model_max = model_max_length(base)
        tokenizer_file = base.path / "tokenizer.json"
        storage = Storage.from_settings(settings)
        req = _ScanRequest(
            task=dataset.task,
            train=_Source(dataset.id, storage.path(dataset.storage_path)),
            validation=_source(session, storage, body.validation_dataset_id),
            test=_source(session, storage, body.test_dataset_id),
            tokenizer_file=tokenizer_file if tokenizer_file.is_file() else None,
            char_cap=CHARS_PER_TOKEN_CAP * (model_max or 8192),
        )
        # a sweep submits several jobs on the same data in one session: read it once
        scans: dict[_ScanRequest, Scan] = session.info.setdefault("audit_scans", {})
        scan = scans.get(req)
        if scan is None:
            scan = scans[req] = _scan(req)
    except Exception:
        logger.exception(
            "audit: cannot read the data of dataset %s; data checks skipped", dataset.id
        )
    ctx = _Context(body=body, dataset=dataset, scan=scan, model_max=model_max)
    findings: list[AuditFinding] = []
    for check in CHECKS:
        try:
            findings += check(ctx)
        except Exception:
            logger.exception(
                "audit: check %s failed on dataset %s; skipped", check.__name__, dataset.id
            )
    fatal = [f for f in findings if f.severity == "fatal"]
    if fatal:
        raise AuditFailed(
            "The job was not created: "
            + " ".join(f.message for f in fatal)
            + " See details.findings.",
            details={"findings": [f.model_dump(mode="json") for f in findings]},
        )
    return findings
