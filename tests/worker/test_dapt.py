"""``dapt``: masked-LM loss falls on in-domain text; the downstream starts from that encoder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import DaptStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.core.device import seed_everything
from worker.serving.predictor import ProbeClassifier, load_predictor
from worker.strategies.dapt import continue_pretraining, loss_window
from worker.strategies.linear_probe import LinearProbe
from worker.strategies.registry import train_model
from worker.testing import FILLER_WORDS
from worker.training.callbacks import NullCallbacks, TrainingCancelled
from worker.training.recipe import TrainedModel, TrainingSetup

MANIFEST = {"base_model": {"id": "tiny-bert"}}
HP = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-2, "seed": 0}


def in_domain_texts(n: int = 64, seed: int = 0) -> list[str]:
    """Repetitive in-domain text: a few fixed phrases, so masked words are predictable."""
    rng = random.Random(seed)
    phrases = [" ".join(FILLER_WORDS[i : i + 4]) for i in range(0, 24, 4)]
    return [" ".join(rng.choices(phrases, k=3)) for _ in range(n)]


class _Recorder(NullCallbacks):
    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.progress: list[tuple[str, int, int]] = []
        self.events: list[tuple[str, dict[str, Any] | None]] = []

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        self.progress.append((phase, done, total))
        if done == self.cancel_at:
            raise TrainingCancelled("cancel requested")

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, data))


def _train(base: Path, learnable_split: Any, callbacks: Any = None, **config: Any) -> TrainedModel:
    train, validation, labels = learnable_split(n_per_class=24, seed=5)
    settings = {"unlabeled_dataset_id": "u", "mlm_steps": 8, "mlm_learning_rate": 1e-3, **config}
    return train_model(
        base_model_dir=base,
        task="text-classification",
        label_names=labels,
        train=train,
        validation=validation,
        strategy=DaptStrategy(**settings),
        hp=Hyperparameters(**HP),
        callbacks=callbacks or NullCallbacks(),
        aux_texts={"unlabeled_dataset_id": in_domain_texts()},
    )


def _mlm_setup(base: Path, hp: Hyperparameters, callbacks: Any) -> TrainingSetup:
    """What the masked-LM phase reads of a setup: the base, tokenizer, hp, device, callbacks."""
    return TrainingSetup(
        base_model_dir=base,
        task="text-classification",
        label_names=["a", "b"],
        train=Examples([], []),
        validation=Examples([], []),
        hp=hp,
        callbacks=callbacks,
        device=torch.device("cpu"),
        tokenizer=AutoTokenizer.from_pretrained(base),
    )


def test_mlm_loss_falls_on_in_domain_text(tiny_bert_dir: Path) -> None:
    seed_everything(0)
    recorder = _Recorder()
    _, losses = continue_pretraining(
        _mlm_setup(tiny_bert_dir, Hyperparameters(batch_size=16, seed=0), recorder),
        in_domain_texts(),
        DaptStrategy(unlabeled_dataset_id="u", mlm_steps=30, mlm_learning_rate=1e-2),
    )
    first, last, window = loss_window(losses)
    print(f"\nMLM loss, mean of the first/last {window} steps: {first:.3f} -> {last:.3f}")
    assert len(losses) == 30 and window == 6
    assert last < 0.7 * first
    assert recorder.progress == [("mlm", step, 30) for step in range(0, 31)]


def test_downstream_starts_from_the_adapted_encoder(
    tiny_bert_dir: Path, learnable_split: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    class SpyProbe(LinearProbe):
        def train(self, setup: TrainingSetup, config: Any) -> TrainedModel:
            seen["dir"] = setup.base_model_dir
            seen["files"] = sorted(p.name for p in setup.base_model_dir.iterdir())
            seen["state"] = AutoModel.from_pretrained(setup.base_model_dir).state_dict()
            return super().train(setup, config)

    monkeypatch.setitem(
        __import__("worker.strategies.registry").strategies.registry.STRATEGIES,
        "linear_probe",
        SpyProbe(),
    )
    recorder = _Recorder()
    trained = _train(tiny_bert_dir, learnable_split, recorder, then="linear_probe")

    # the same masked-LM phase run on its own, seeded as train_model seeds it
    seed_everything(HP["seed"])
    adapted, _ = continue_pretraining(
        _mlm_setup(tiny_bert_dir, Hyperparameters(**HP), NullCallbacks()),
        in_domain_texts(),
        DaptStrategy(unlabeled_dataset_id="u", mlm_steps=8, mlm_learning_rate=1e-3),
    )
    base = load_file(str(tiny_bert_dir / "model.safetensors"))
    start = seen["state"]
    assert set(start) == set(base)
    for name, tensor in adapted.state_dict().items():
        assert torch.equal(start[name], tensor), name
    assert not torch.equal(
        start["embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"]
    )
    assert torch.equal(start["pooler.dense.weight"], base["pooler.dense.weight"])
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= set(seen["files"])

    # events, progress, metrics
    assert [p for p in recorder.progress if p[0] == "mlm"][-1] == ("mlm", 8, 8)
    [mlm_done] = [data for kind, data in recorder.events if kind == "mlm_done"]
    assert mlm_done is not None and mlm_done["steps"] == 8
    assert trained.metrics["mlm_first_loss"] == mlm_done["first_loss"]

    # the artifact carries the adapted encoder; the temporary directory is gone
    assert not seen["dir"].exists()
    assert trained.kind == "head" and trained.backbone is not None
    assert trained.base_model_dir == tiny_bert_dir and trained.strategy == "dapt"
    dest = write_artifact(trained, tmp_path / "m", manifest=MANIFEST)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["backbone"] == "encoder" and manifest["strategy"] == "dapt"
    shipped = load_file(str(dest / "encoder" / "model.safetensors"))
    for name, tensor in adapted.state_dict().items():
        assert torch.equal(shipped[name], tensor), name
    _assert_no_reference(dest, str(seen["dir"].parent))
    in_memory = ProbeClassifier(trained.backbone, trained.model, manifest["head"]["pooling"])
    _assert_round_trip(dest, in_memory)


@pytest.mark.parametrize("then", ["full", "lora"])
def test_full_and_merged_lora_downstream(
    tiny_bert_dir: Path, learnable_split: Any, tmp_path: Path, then: str
) -> None:
    trained = _train(tiny_bert_dir, learnable_split, then=then, mlm_steps=4)
    assert trained.kind == "full" and trained.strategy == "dapt"
    assert not any("lora" in name for name, _ in trained.model.named_parameters())
    dest = write_artifact(trained, tmp_path / "m", manifest=MANIFEST)
    _assert_no_reference(dest, "tuneserve-dapt-")
    _assert_round_trip(dest, trained.model)


def test_cancel_during_mlm_and_missing_texts(tiny_bert_dir: Path, learnable_split: Any) -> None:
    recorder = _Recorder(cancel_at=3)
    with pytest.raises(TrainingCancelled):
        _train(tiny_bert_dir, learnable_split, recorder)
    assert recorder.progress == [("mlm", 0, 8), ("mlm", 1, 8), ("mlm", 2, 8), ("mlm", 3, 8)]
    train, validation, labels = learnable_split(n_per_class=4, seed=5)
    with pytest.raises(ValueError, match="in-domain texts"):
        train_model(
            base_model_dir=tiny_bert_dir,
            task="text-classification",
            label_names=labels,
            train=train,
            validation=validation,
            strategy=DaptStrategy(unlabeled_dataset_id="u"),
            hp=Hyperparameters(**HP),
            callbacks=NullCallbacks(),
        )


def _assert_round_trip(artifact: Path, model: torch.nn.Module) -> None:
    """The loaded artifact predicts what the trained model in memory predicts."""
    predictor = load_predictor(artifact, device=torch.device("cpu"))
    texts = ["alpha kalo alpha", "beta mimi beta", "kalo lolo"]
    with torch.inference_mode():
        outputs = model.cpu().eval()(**predictor._encode(texts))
        logits = outputs if isinstance(outputs, torch.Tensor) else outputs.logits
    expected = torch.softmax(logits, dim=-1)
    for row, prediction in zip(expected, predictor.predict(texts, top_k=2), strict=True):
        scores = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        assert [scores["A"], scores["B"]] == pytest.approx(row.tolist(), abs=1e-5)


def _assert_no_reference(artifact: Path, needle: str) -> None:
    for path in artifact.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".txt", ".md"}:
            assert needle not in path.read_text(encoding="utf-8"), path
