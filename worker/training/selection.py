"""Model selection during training: which evaluation's weights are served, and early stopping.

:class:`EvalPlan` says how a run is judged (the metric, its direction, patience, step
evaluations, loss weights); :class:`Selector` watches every evaluation, keeps a copy of the
weights of the best one (in memory, and on disk beside the job's checkpoints so that a resumed
run still serves the right ones), says when to stop, and at the end puts the best weights back
into the model and reports both the selected and the last evaluation.

The copy covers the whole ``state_dict`` (parameters and buffers), not only what trains at the
moment: gradual unfreezing changes that set during the run, and a copy of everything is simple
and always right. For the BERT-family encoders served here it costs one CPU copy per improving
evaluation.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from app.atomic import atomic_dir
from app.contract.hyperparameters import Hyperparameters
from worker.training.callbacks import TrainingCallbacks, is_scalar_metric

BEST_PREFIX = "best-step-"
BEST_WEIGHTS = "weights.safetensors"
BEST_STATE = "best.json"


@dataclass(frozen=True)
class EvalPlan:
    """How ``fit`` evaluates, selects and weights its loss."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    #: evaluations without improvement before stopping; None never stops early
    patience: int | None = None
    min_delta: float = 0.0
    #: serve the best evaluation's weights (else the last one's)
    restore_best: bool = True
    #: also evaluate every this many optimisation steps (besides each epoch end)
    eval_every_steps: int | None = None
    #: per-class weights of the training loss (multi-label: each label's ``pos_weight``)
    class_weights: torch.Tensor | None = None
    #: label names, for per-class validation metrics (``val_f1/<label>`` ...)
    label_names: tuple[str, ...] = ()

    @classmethod
    def from_hyperparameters(
        cls,
        hp: Hyperparameters,
        *,
        label_names: list[str],
        class_weights: torch.Tensor | None = None,
    ) -> EvalPlan:
        stopping = hp.early_stopping
        return cls(
            metric=stopping.metric,
            mode=stopping.resolved_mode(),
            patience=stopping.patience if stopping.enabled else None,
            min_delta=stopping.min_delta,
            restore_best=stopping.restore_best,
            eval_every_steps=hp.eval_every_steps,
            class_weights=class_weights,
            label_names=tuple(label_names),
        )


#: what ``fit`` uses when a caller gives no plan: select by validation loss, never stop early
DEFAULT_PLAN = EvalPlan()


class Selector:
    """Tracks the best evaluation of one run; see the module doc."""

    def __init__(self, plan: EvalPlan, directory: Path | None = None) -> None:
        self.plan = plan
        self.directory = directory
        self.best_value: float | None = None
        self.best_index: int | None = None
        self.since_best = 0
        self.stopped_early = False
        self._best_state: dict[str, torch.Tensor] | None = None
        self._history: list[dict[str, float]] = []
        #: set by :meth:`finish`: the index in the history of the served evaluation
        self.selected_index = -1

    # ---- judging -----------------------------------------------------------------------------
    def _improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        delta = self.plan.min_delta
        if self.plan.mode == "min":
            return value < self.best_value - delta
        return value > self.best_value + delta

    def _judge(self, metrics: dict[str, float]) -> bool:
        """Record one evaluation; True when it is the new best."""
        self._history.append(metrics)
        value = metrics.get(self.plan.metric)
        if value is None:
            if metrics and any(k.startswith("val_") for k in metrics):
                raise ValueError(
                    f"the selection metric {self.plan.metric!r} is not among the validation "
                    f"metrics ({', '.join(sorted(k for k in metrics if is_scalar_metric(k)))})"
                )
            return False  # no validation data: nothing to select by
        if self._improves(float(value)):
            self.best_value, self.since_best = float(value), 0
            self.best_index = len(self._history) - 1
            return True
        self.since_best += 1
        return False

    def replay(self, history: list[dict[str, float]]) -> None:
        """Rebuild the tracker from a resumed run's history and its saved best weights."""
        for metrics in history:
            self._judge(metrics)
        if self.best_index is not None and self.plan.restore_best:
            self._best_state = self._load_best(int(history[self.best_index].get("step", -1)))

    def observe(
        self,
        metrics: dict[str, float],
        model: nn.Module,
        callbacks: TrainingCallbacks,
        *,
        final: bool = False,
    ) -> bool:
        """Judge one evaluation (already appended by the caller to its history); keep the
        weights when it is the best so far. Returns True when training should stop early;
        the run's ``final`` evaluation never counts as an early stop: nothing was left."""
        if self._judge(metrics) and self.plan.restore_best:
            self._best_state = {
                name: tensor.detach().to("cpu", copy=True).contiguous()
                for name, tensor in model.state_dict().items()
            }
            self._save_best(int(metrics.get("step", 0)), metrics)
        patience = self.plan.patience
        if patience is not None and self.since_best >= patience and not final:
            self.stopped_early = True
            callbacks.on_event(
                "early_stopped",
                f"Stopped early: {self.plan.metric} has not improved by more than "
                f"{self.plan.min_delta} for {self.since_best} evaluations "
                f"(best {self.best_value:.4f} at epoch {self._best_epoch():g}).",
                {"metric": self.plan.metric, "best": self.best_value, "patience": patience},
            )
            return True
        return False

    # ---- the end -----------------------------------------------------------------------------
    def finish(self, model: nn.Module, callbacks: TrainingCallbacks) -> dict[str, Any]:
        """Put the selected weights back (if they are not the last ones) and describe both."""
        history = self._history
        last_index = len(history) - 1
        selected_index = last_index
        if self.plan.restore_best and self.best_index is not None:
            selected_index = self.best_index
        if selected_index != last_index and self._best_state is None:
            # the best weights were not kept (a resume without their on-disk copy): serve the
            # last ones and say so, rather than claim a selection that did not happen
            callbacks.on_event(
                "best_unavailable",
                "The best evaluation's weights were not available after a resume; serving the "
                "last evaluation's.",
            )
            selected_index = last_index
        if selected_index != last_index and self._best_state is not None:
            model.load_state_dict(self._best_state)
            callbacks.on_event(
                "best_restored",
                f"Serving the weights of epoch {self._best_epoch():g} "
                f"({self.plan.metric}={self.best_value:.4f}), not the last evaluation's.",
                {"epoch": self._best_epoch(), "metric": self.plan.metric},
            )
        self._best_state = None
        self.selected_index = selected_index
        selected = history[selected_index] if history else {}
        last = history[-1] if history else {}
        return {
            "metric": self.plan.metric,
            "mode": self.plan.mode,
            "selected_epoch": float(selected.get("epoch", 0.0)),
            "selected_step": int(selected.get("step", 0)),
            "selected": _validation_only(selected),
            "last_epoch": float(last.get("epoch", 0.0)),
            "last_step": int(last.get("step", 0)),
            "last": _validation_only(last),
            "stopped_early": self.stopped_early,
            "evaluations": len(history),
        }

    def _best_epoch(self) -> float:
        if self.best_index is None:
            return 0.0
        return float(self._history[self.best_index].get("epoch", 0.0))

    # ---- the on-disk copy --------------------------------------------------------------------
    def _save_best(self, step: int, metrics: dict[str, float]) -> None:
        if self.directory is None or self._best_state is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{BEST_PREFIX}{step:08d}"
        with atomic_dir(final, replace=True, prefix=".tmp-best-") as tmp:
            save_file(self._best_state, str(tmp / BEST_WEIGHTS))
            (tmp / BEST_STATE).write_text(json.dumps({"step": step, "metrics": metrics}))
        for older in self.directory.glob(f"{BEST_PREFIX}*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def _load_best(self, step: int) -> dict[str, torch.Tensor] | None:
        if self.directory is None:
            return None
        path = self.directory / f"{BEST_PREFIX}{step:08d}"
        if not (path / BEST_STATE).is_file():
            return None
        return load_file(str(path / BEST_WEIGHTS))


def _validation_only(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith("val_")}
