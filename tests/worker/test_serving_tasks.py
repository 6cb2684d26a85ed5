"""Text pairs and multi-label models through the batcher give what their predictor gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.contract.strategies import LinearProbeStrategy, LoraStrategy
from tests.worker.serving_harness import Harness
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.serving.predictor import load_predictor
from worker.testing import learnable_label_sets, learnable_pairs

MANIFEST = {"base_model": {"id": "tiny-bert"}}


def _pairs() -> tuple[Examples, Examples, list[str]]:
    firsts, seconds, labels = learnable_pairs(64)
    return (
        Examples(firsts[:48], labels[:48], seconds[:48]),
        Examples(firsts[48:], labels[48:], seconds[48:]),
        ["same", "different"],
    )


def _multilabel() -> tuple[Examples, Examples, list[str]]:
    texts, labels = learnable_label_sets(90)
    return (
        Examples(texts[:72], labels[:72]),  # type: ignore[arg-type]
        Examples(texts[72:], labels[72:]),  # type: ignore[arg-type]
        ["has_alpha", "has_beta"],
    )


@pytest.fixture(scope="module")
def task_artifacts(
    tiny_bert_dir: Path, tiny_trainer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    for name, strategy, split, task in (
        ("pair-probe", LinearProbeStrategy(), _pairs(), "text-pair-classification"),
        ("pair-lora", LoraStrategy(r=4), _pairs(), "text-pair-classification"),
        ("multi-probe", LinearProbeStrategy(), _multilabel(), "text-multilabel"),
        ("multi-lora", LoraStrategy(r=4), _multilabel(), "text-multilabel"),
    ):
        trained = tiny_trainer(tiny_bert_dir, strategy, split=split, task=task, epochs=3)
        write_artifact(trained, root / name, manifest=MANIFEST)
    return root


def test_pairs_and_label_sets_equal_their_predictor(
    task_artifacts: Path, tiny_bert_dir: Path
) -> None:
    pair_inputs = [["alpha kalo", "alpha"], ["beta", "alpha lolo"], ["beta mi", "beta"]]
    texts = ["kalo alpha alpha", "beta beta sopa", "alpha beta alpha beta", "kalo"]
    harness = Harness(task_artifacts, tiny_bert_dir)
    sent = {
        name: harness.submit(name, pair_inputs if name.startswith("pair") else texts)
        for name in ("pair-probe", "pair-lora", "multi-probe", "multi-lora")
    }
    harness.drain()
    # one shared encoder: pair rows and plain rows, probes and adapters, in few forwards
    assert len(harness.registry.backbones) == 1
    for name, request in sent.items():
        reply = harness.replies[request.id]
        assert reply.ok, reply
        predictor = load_predictor(task_artifacts / name, resolve_base=lambda _: tiny_bert_dir)
        inputs = [tuple(p) for p in pair_inputs] if name.startswith("pair") else texts
        expected = predictor.predict(inputs, top_k=2)  # type: ignore[arg-type]
        got = reply.predictions or []
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        if name.startswith("multi"):
            assert [sorted(p["labels"]) for p in got] == [sorted(p["labels"]) for p in expected]
        for a, b in zip(got, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
