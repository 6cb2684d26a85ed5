"""Checkpoints a job can resume from: safetensors tensors + a JSON state, written atomically.

A checkpoint is a directory ``step-{n:08d}/`` under the job's checkpoint folder:

- ``weights.safetensors``: the trainable parameters (frozen ones never change, so they are
  re-created from the base, not stored) and every buffer (``buffer:<name>``: batch-norm
  statistics change in training);
- ``optimizer.safetensors`` + the optimizer's non-tensor state in ``state.json``;
- ``rng.safetensors``: torch's CPU (and CUDA) RNG states and the data-order generator's state
  at the start of the current epoch;
- ``state.json``: epoch, step, batches done in the epoch, the metrics so far, the scheduler's
  state, Python's and NumPy's RNG states.

No pickle anywhere. Each is written to ``.tmp-*``, fsynced and renamed into place
(``app.atomic``). ``prune`` keeps the latest and the best (by the tracked metric).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from app.atomic import atomic_dir

STATE = "state.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
#: the key prefix of a buffer (batch-norm statistics...) among the saved weights
BUFFER_PREFIX = "buffer:"


@dataclass
class ResumeState:
    """Where a resumed run continues: after ``step`` global steps, ``batch`` batches into
    ``epoch`` (1-based), with the history so far."""

    epoch: int
    step: int
    batch: int
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_generator_state: torch.Tensor | None = None
    loss_sum: float = 0.0


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict[str, Any]] = {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": meta}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: Any
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class Checkpointer:
    """Saves and restores the training state of one job."""

    def __init__(
        self,
        directory: Path,
        *,
        every_steps: int,
        metric: str = "val_loss",
        mode: str = "min",
    ) -> None:
        self.directory = Path(directory)
        self.every_steps = max(1, every_steps)
        self.metric = metric
        self.mode = mode

    def child(self, name: str) -> Checkpointer:
        """The checkpoints of one phase of the job, in a folder of their own."""
        return Checkpointer(
            self.directory / name, every_steps=self.every_steps, metric=self.metric, mode=self.mode
        )

    # ---- writing -------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        return step % self.every_steps == 0

    def save(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: ResumeState,
    ) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{state.step:08d}"
        if final.exists():
            return final
        with atomic_dir(final) as tmp:
            weights = {
                name: p.detach().cpu().contiguous()
                for name, p in model.named_parameters()
                if p.requires_grad
            }
            # buffers change in training too (batch-norm statistics): all of them are saved
            buffers = {
                f"{BUFFER_PREFIX}{name}": b.detach().cpu().contiguous()
                for name, b in model.named_buffers()
            }
            save_file({**weights, **buffers}, str(tmp / WEIGHTS))
            opt_tensors, opt_meta = _optimizer_tensors(optimizer)
            save_file(opt_tensors, str(tmp / OPTIMIZER))
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    rng[f"cuda.{i}"] = s
            if state.epoch_generator_state is not None:
                rng["epoch_generator"] = state.epoch_generator_state
            save_file(rng, str(tmp / RNG))
            np_state: Any = np.random.get_state()
            payload = {
                "epoch": state.epoch,
                "step": state.step,
                "batch": state.batch,
                "loss_sum": state.loss_sum,
                "history": state.history,
                "trainable": sorted(weights),
                "optimizer": opt_meta,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "python_random": random.getstate(),
                "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            }
            (tmp / STATE).write_text(json.dumps(_json_safe(payload)), encoding="utf-8")
        self.prune()
        return final

    # ---- reading -------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("step-*") if (p / STATE).is_file())

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def prune(self) -> None:
        """Keep the latest checkpoint and the one taken at the best epoch end so far."""
        found = self.checkpoints()
        if len(found) <= 2:
            return
        keep = {found[-1]}
        scored = [(s, p) for p in found if (s := self._epoch_end_score(p)) is not None]
        if scored:
            keep.add(min(scored)[1])
        for path in found:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def _epoch_end_score(self, path: Path) -> float | None:
        state = json.loads((path / STATE).read_text())
        if state.get("batch") != 0 or not state.get("history"):
            return None
        value = state["history"][-1].get(self.metric)
        if value is None:
            return None
        return float(value) if self.mode == "min" else -float(value)

    def restore(
        self,
        path: Path,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
    ) -> ResumeState:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        weights = load_file(str(path / WEIGHTS))
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        missing = set(state["trainable"]) - set(params)
        if missing:
            raise ValueError(f"checkpoint does not fit the model: {sorted(missing)[:5]}")
        with torch.no_grad():
            for name, value in weights.items():
                if name.startswith(BUFFER_PREFIX):
                    buffer = buffers.get(name.removeprefix(BUFFER_PREFIX))
                    if buffer is not None:
                        buffer.copy_(value.to(buffer.device))
                else:
                    params[name].copy_(value.to(params[name].device))
        _restore_optimizer(optimizer, load_file(str(path / OPTIMIZER)), state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        rng = load_file(str(path / RNG))
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available():
            cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda."))]
            if cuda:
                torch.cuda.set_rng_state_all(cuda)
        py = state["python_random"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npr = state["numpy_random"]
        np.random.set_state((npr[0], np.array(npr[1], dtype=np.uint32), *npr[2:]))
        return ResumeState(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            batch=int(state["batch"]),
            history=list(state["history"]),
            epoch_generator_state=rng.get("epoch_generator"),
            loss_sum=float(state.get("loss_sum", 0.0)),
        )

    def remove_all(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
