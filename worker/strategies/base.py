"""The small Protocol every strategy implementation satisfies.

A strategy gets a resolved :class:`TrainingSetup` and its own typed config (the pydantic model
from ``app.contract.strategies``), builds what it trains, runs :func:`worker.training.loop.fit`
and returns a :class:`TrainedModel` the artifact writer can save.
"""

from __future__ import annotations

from typing import Any, Protocol

from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup


class Strategy(Protocol):
    #: the API name (``strategy.name`` in ``POST /v1/jobs``)
    name: str
    #: what the artifact holds: ``full`` weights or only a ``head`` over a referenced base
    artifact_kind: ArtifactKind

    def train(self, setup: TrainingSetup, config: Any) -> TrainedModel: ...
