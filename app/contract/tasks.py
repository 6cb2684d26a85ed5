"""The dataset tasks tuneserve knows, named once."""

from __future__ import annotations

from typing import Final, Literal, get_args

Task = Literal[
    "text-classification",
    "text-multilabel",
    "text-pair-classification",
    "unlabeled-text",
    "image-classification",
    "image-multilabel",
]
TEXT_CLASSIFICATION: Final = "text-classification"
MULTILABEL_TASK: Final = "text-multilabel"
PAIR_TASK: Final = "text-pair-classification"
UNLABELED_TEXT: Final = "unlabeled-text"
IMAGE_CLASSIFICATION: Final = "image-classification"
IMAGE_MULTILABEL: Final = "image-multilabel"
#: every task, in the order the API lists them
TASKS: tuple[str, ...] = get_args(Task)
#: the tasks whose data are images (a zip upload; docs/datasets.md, "Image datasets")
IMAGE_TASKS: frozenset[str] = frozenset({IMAGE_CLASSIFICATION, IMAGE_MULTILABEL})
#: the tasks a text classifier trains on (every text task with labels)
LABELED_TEXT_TASKS: frozenset[str] = frozenset(TASKS) - {UNLABELED_TEXT} - IMAGE_TASKS
#: the tasks whose examples carry several labels each
MULTILABEL_TASKS: frozenset[str] = frozenset({MULTILABEL_TASK, IMAGE_MULTILABEL})
#: every task a classifier trains on: the labeled text tasks and the image tasks
LABELED_TASKS: frozenset[str] = LABELED_TEXT_TASKS | IMAGE_TASKS
