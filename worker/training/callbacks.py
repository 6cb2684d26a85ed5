"""How the training loop reports progress and how a caller stops it.

The runner implements :class:`TrainingCallbacks` (progress, metrics, heartbeat, cancel);
:class:`NullCallbacks` is the no-op double used by tests and benchmarks.
"""

from __future__ import annotations

from typing import Any, Protocol


def is_scalar_metric(name: str) -> bool:
    """Summary metrics (``val_loss``) as opposed to per-class ones (``val_f1/sport``)."""
    return "/" not in name


class TrainingCancelled(Exception):
    """Raised by a callback to stop training at a step boundary; propagates out of the loop."""


class TrainingReleased(Exception):
    """Raised by a callback when the worker shuts down: the loop saves a checkpoint at this
    step boundary and propagates it; the job goes back to the queue and resumes elsewhere."""


class TrainingCallbacks(Protocol):
    def on_train_begin(self, *, total_steps: int, epochs: int) -> None: ...

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        """Called after every optimisation step (``step`` counts from 1 over the whole run).

        May raise :class:`TrainingCancelled`.
        """
        ...

    def on_epoch_end(
        self, *, epoch: int, step: int, total_steps: int, metrics: dict[str, float]
    ) -> None: ...

    def on_evaluation(self, *, epoch: float, step: int, metrics: dict[str, float]) -> None:
        """A validation between epoch ends (``eval_every_steps``); must not raise."""
        ...

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Something worth recording happened (e.g. ``features_cached``)."""
        ...

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        """Progress of a phase before the optimisation steps (e.g. ``extracting_features``).

        May raise :class:`TrainingCancelled`.
        """
        ...


class NullCallbacks:
    """Does nothing; satisfies :class:`TrainingCallbacks`."""

    def on_train_begin(self, *, total_steps: int, epochs: int) -> None:
        return None

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        return None

    def on_epoch_end(
        self, *, epoch: int, step: int, total_steps: int, metrics: dict[str, float]
    ) -> None:
        return None

    def on_evaluation(self, *, epoch: float, step: int, metrics: dict[str, float]) -> None:
        return None

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        return None

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        return None
