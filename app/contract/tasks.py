"""The dataset tasks tuneserve knows, named once."""

from __future__ import annotations

from typing import Final, Literal, get_args

Task = Literal[
    "text-classification", "text-multilabel", "text-pair-classification", "unlabeled-text"
]
TEXT_CLASSIFICATION: Final = "text-classification"
MULTILABEL_TASK: Final = "text-multilabel"
PAIR_TASK: Final = "text-pair-classification"
UNLABELED_TEXT: Final = "unlabeled-text"
#: every task, in the order the API lists them
TASKS: tuple[str, ...] = get_args(Task)
#: the tasks a classifier trains on (every task with labels)
LABELED_TEXT_TASKS: frozenset[str] = frozenset(TASKS) - {UNLABELED_TEXT}
