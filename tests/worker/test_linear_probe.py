"""``linear_probe``: frozen backbone, features computed once, a head that learns; pooling."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertModel

from app.base_models.registry import inspect_model_dir
from app.contract.strategies import LinearProbeStrategy
from worker.core.pooling import pool, resolve_pooling
from worker.training.callbacks import NullCallbacks


class _Recorder(NullCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any] | None]] = []
        self.total_steps = 0

    def on_train_begin(self, *, total_steps: int, epochs: int) -> None:
        self.total_steps = total_steps

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, data))


def test_backbone_frozen_and_run_once(
    tiny_bert_dir: Path, tiny_trainer: Any, learnable_split: Any
) -> None:
    split = learnable_split(n_per_class=40, seed=3)
    train, validation, _ = split
    backbones: list[torch.nn.Module] = []

    def count(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, BertModel):
            backbones.append(module)

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    recorder = _Recorder()
    began = time.perf_counter()
    try:
        trained = tiny_trainer(
            tiny_bert_dir, LinearProbeStrategy(), split=split, callbacks=recorder, epochs=3
        )
    finally:
        handle.remove()
    wall = time.perf_counter() - began

    batch_size = 16
    one_pass = math.ceil(len(train) / batch_size) + math.ceil(len(validation) / batch_size)
    assert len(backbones) == one_pass
    assert recorder.total_steps == 3 * math.ceil(len(train) / batch_size)
    backbone = backbones[0]
    assert all(module is backbone for module in backbones)
    assert not backbone.training
    assert not any(parameter.requires_grad for parameter in backbone.parameters())
    pretrained = load_file(str(tiny_bert_dir / "model.safetensors"))
    state = backbone.state_dict()
    for name, tensor in pretrained.items():
        assert torch.equal(state[name], tensor), name

    kind, data = recorder.events[0]
    assert kind == "features_cached"
    assert data is not None
    assert (data["train_examples"], data["validation_examples"]) == (len(train), len(validation))
    # the feature pass ran the backbone over every example: it took time, and less than the job
    assert 0 < data["seconds"] < wall
    assert isinstance(trained.model, torch.nn.Linear)
    assert trained.model.weight.shape == (2, 32)
    assert trained.kind == "head"
    assert trained.metrics["val_accuracy"] >= 0.9


def test_probe_learns_with_default_learning_rate(tiny_st_bert_dir: Path, tiny_trainer: Any) -> None:
    trained = tiny_trainer(tiny_st_bert_dir, LinearProbeStrategy(), learning_rate=None, epochs=10)
    assert trained.metrics["val_accuracy"] >= 0.9


def test_pooling_auto_reads_sentence_transformers_config(
    tiny_bert_dir: Path, tiny_st_bert_dir: Path, tiny_trainer: Any
) -> None:
    assert resolve_pooling(tiny_st_bert_dir, "auto") == "mean"
    assert resolve_pooling(tiny_bert_dir, "auto") == "cls"
    assert resolve_pooling(tiny_st_bert_dir, "cls") == "cls"
    assert resolve_pooling(tiny_bert_dir, "pooler") == "pooler"
    assert tiny_trainer(tiny_st_bert_dir, LinearProbeStrategy(), epochs=1).pooling == "mean"
    assert tiny_trainer(tiny_bert_dir, LinearProbeStrategy(), epochs=1).pooling == "cls"


def test_pooling_unsupported_sentence_transformers_mode(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_lasttoken": true}')
    with pytest.raises(ValueError, match="unsupported"):
        resolve_pooling(tmp_path, "auto")


def test_listing_and_training_read_the_same_pooling(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A pooling config with two flags set: GET /v1/base-models shows the mode the worker
    trains and serves with (they once checked the flags in different orders)."""
    base = tmp_path / "two-flags"
    shutil.copytree(tiny_bert_dir, base)
    (base / "1_Pooling").mkdir()
    flags = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}
    (base / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    listed = inspect_model_dir("two-flags", base, "test")
    assert listed is not None
    assert listed.pooling == resolve_pooling(base, "auto") == "mean"


def test_pool_modes_ignore_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    outputs = type("Out", (), {"last_hidden_state": hidden, "pooler_output": hidden[:, 1]})()
    assert pool(outputs, mask, "mean").tolist() == [[2.0, 3.0]]
    assert pool(outputs, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(outputs, mask, "max").tolist() == [[3.0, 4.0]]
    assert pool(outputs, mask, "pooler").tolist() == [[3.0, 4.0]]
