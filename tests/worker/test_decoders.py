"""GPT-2-style decoders: ``linear_probe`` (last-token pooling), ``partial``, ``full`` and
``lora`` train on a tiny random GPT-2, and each artifact serves what was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.strategies import (
    FullStrategy,
    LinearProbeStrategy,
    LoraStrategy,
    PartialStrategy,
)
from worker.artifacts import write_artifact
from worker.core.models import load_tokenizer
from worker.core.pooling import pool, resolve_pooling
from worker.serving.predictor import load_predictor
from worker.strategies.layer_groups import layer_group
from worker.training.recipe import TrainedModel

MANIFEST = {"base_model": {"id": "tiny-gpt2"}}
TEXTS = ["alpha kalo alpha", "beta mimi beta beta lolo", "kalo"]


def test_auto_pooling_of_a_decoder_is_its_last_real_token(tiny_gpt2_dir: Path) -> None:
    assert resolve_pooling(tiny_gpt2_dir, "auto") == "last"
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    outputs = type("Out", (), {"last_hidden_state": hidden})()
    right_padded = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left_padded = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(outputs, right_padded, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(outputs, left_padded, "last").flatten().tolist() == [3.0, 7.0]


def test_the_tokenizer_pads_with_end_of_text(tiny_gpt2_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    assert tokenizer.pad_token == tokenizer.eos_token
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(dim=1).tolist() == [
        len(tokenizer(text)["input_ids"]) for text in TEXTS
    ]


def test_layer_groups_of_gpt2() -> None:
    assert layer_group("transformer.wte.weight", 2) == 3
    assert layer_group("transformer.wpe.weight", 2) == 3
    assert layer_group("transformer.h.1.attn.c_attn.weight", 2) == 1  # top layer
    assert layer_group("transformer.h.0.mlp.c_fc.weight", 2) == 2
    assert layer_group("transformer.ln_f.weight", 2) == 0  # with the head
    assert layer_group("score.weight", 2) == 0


def _round_trip(trained: TrainedModel, tmp_path: Path, expected: torch.Tensor) -> None:
    """The written artifact predicts what the model in memory predicts."""
    dest = write_artifact(trained, tmp_path / "m", manifest=MANIFEST)
    served = load_predictor(dest, device=torch.device("cpu")).logits(TEXTS)
    torch.testing.assert_close(served, expected, atol=1e-5, rtol=1e-4)


def _classifier_logits(model: Any, base: Path) -> torch.Tensor:
    tokenizer = load_tokenizer(base)
    with torch.inference_mode():
        logits: torch.Tensor = model.eval()(
            **tokenizer(TEXTS, padding=True, return_tensors="pt")
        ).logits
    return logits


@pytest.mark.parametrize("strategy", [FullStrategy(), PartialStrategy(trainable_layers=1)])
def test_full_and_partial_train_a_gpt2_classifier(
    tiny_gpt2_dir: Path, tiny_trainer: Any, tmp_path: Path, strategy: Any
) -> None:
    trained = tiny_trainer(tiny_gpt2_dir, strategy, epochs=2)
    assert trained.kind == "full" and trained.metrics["val_accuracy"] >= 0.5
    assert trained.model.config.pad_token_id == trained.model.config.eos_token_id
    if isinstance(strategy, PartialStrategy):  # embeddings and the lower layer stayed frozen
        base = type(trained.model).from_pretrained(tiny_gpt2_dir, num_labels=2)
        for name, parameter in trained.model.named_parameters():
            if layer_group(name, 2) >= 2:
                assert torch.equal(parameter, base.state_dict()[name]), name
    _round_trip(trained, tmp_path, _classifier_logits(trained.model, tiny_gpt2_dir))


def test_linear_probe_on_gpt2_pools_the_last_token(
    tiny_gpt2_dir: Path, tiny_trainer: Any, tmp_path: Path
) -> None:
    trained = tiny_trainer(tiny_gpt2_dir, LinearProbeStrategy(), epochs=3)
    assert trained.kind == "head" and trained.pooling == "last"
    dest = write_artifact(trained, tmp_path / "m", manifest=MANIFEST)
    predictor = load_predictor(dest, device=torch.device("cpu"))
    assert [p["label"] for p in predictor.predict(TEXTS)]  # serves over the referenced base


def test_lora_adapts_gpt2_attention_and_freezes_the_base(
    tiny_gpt2_dir: Path, tiny_trainer: Any, tmp_path: Path
) -> None:
    trained = tiny_trainer(tiny_gpt2_dir, LoraStrategy(r=4), epochs=2)
    assert trained.kind == "lora"
    adapted = {n for n, p in trained.model.named_parameters() if p.requires_grad}
    assert any("c_attn.lora_A" in name for name in adapted)
    assert not any(name.endswith("c_attn.base_layer.weight") for name in adapted)
    _round_trip(trained, tmp_path, _classifier_logits(trained.model, tiny_gpt2_dir))
