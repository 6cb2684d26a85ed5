"""Predictor: top-k, truncation, text pairs, multilabel label sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.contract.strategies import FullStrategy, LinearProbeStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.serving.predictor import Predictor, load_predictor
from worker.testing import FILLER_WORDS, learnable_label_sets, learnable_pairs

MANIFEST = {"base_model": {"id": "tiny-bert"}}


@pytest.fixture(scope="module")
def probe_predictor(trained_probe: Any, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    dest = write_artifact(trained_probe, tmp_path_factory.mktemp("p") / "m", manifest=MANIFEST)
    return load_predictor(dest)


def test_top_k_order_and_size(probe_predictor: Predictor) -> None:
    texts = ["alpha kalo alpha", "beta mimi beta", "kalo"]
    for top_k, size in [(1, 1), (2, 2), (10, 2)]:
        predictions = probe_predictor.predict(texts, top_k=top_k)
        assert len(predictions) == len(texts)
        for prediction in predictions:
            ranked = prediction["top_k"]
            assert len(ranked) == size
            assert [entry["score"] for entry in ranked] == sorted(
                (entry["score"] for entry in ranked), reverse=True
            )
            assert (prediction["label"], prediction["score"]) == (
                ranked[0]["label"],
                ranked[0]["score"],
            )
            assert "labels" not in prediction
    assert sum(entry["score"] for entry in probe_predictor.predict(texts, top_k=2)[0]["top_k"]) == (
        pytest.approx(1.0)
    )
    labels = [p["label"] for p in probe_predictor.predict(texts[:2])]
    assert labels == ["A", "B"]
    assert probe_predictor.predict([]) == []


def test_over_long_input_is_truncated(probe_predictor: Predictor) -> None:
    assert probe_predictor.max_length == 64  # capped by the tiny model, manifest says more
    long_text = " ".join(["alpha", *FILLER_WORDS * 3])
    [prediction] = probe_predictor.predict([long_text])
    assert prediction["label"] in {"A", "B"}


def test_plain_inputs_rejected_for_pairs_and_vice_versa(probe_predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="plain text"):
        probe_predictor.predict([("alpha", "beta")])  # type: ignore[list-item]


def test_text_pair_classification(tiny_bert_dir: Path, tiny_trainer: Any, tmp_path: Path) -> None:
    # label: does the pair's second text carry the same marker as the first?
    firsts, seconds, labels = learnable_pairs(64)
    split = (
        Examples(firsts[:48], labels[:48], seconds[:48]),
        Examples(firsts[48:], labels[48:], seconds[48:]),
        ["same", "different"],
    )
    trained = tiny_trainer(
        tiny_bert_dir, FullStrategy(), split=split, task="text-pair-classification", epochs=1
    )
    predictor = load_predictor(write_artifact(trained, tmp_path / "m", manifest=MANIFEST))
    predictions = predictor.predict([("alpha kalo", "alpha"), ["beta", "alpha lolo"]], top_k=2)
    assert [len(p["top_k"]) for p in predictions] == [2, 2]
    assert all(p["label"] in {"same", "different"} for p in predictions)
    with pytest.raises(ValueError, match="pair"):
        predictor.predict(["alpha kalo"])


def test_multilabel_returns_label_sets(
    tiny_st_bert_dir: Path, tiny_trainer: Any, tmp_path: Path
) -> None:
    texts, labels = learnable_label_sets(120)
    split = (
        Examples(texts[:96], labels[:96]),
        Examples(texts[96:], labels[96:]),
        ["has_alpha", "has_beta"],
    )
    trained = tiny_trainer(
        tiny_st_bert_dir, LinearProbeStrategy(), split=split, task="text-multilabel", epochs=20
    )
    assert set(trained.metrics) >= {
        "val_loss",
        "val_micro_f1",
        "val_macro_f1",
        "val_subset_accuracy",
    }
    assert trained.metrics["val_micro_f1"] >= 0.9
    predictor = load_predictor(write_artifact(trained, tmp_path / "m", manifest=MANIFEST))
    validation = split[1]
    predictions = predictor.predict(validation.texts, top_k=2)
    names = ["has_alpha", "has_beta"]
    truth = [sorted(names[i] for i in label) for label in validation.labels]  # type: ignore[union-attr]
    exact = sum(sorted(p["labels"]) == t for p, t in zip(predictions, truth, strict=True))
    assert exact / len(truth) == pytest.approx(trained.metrics["val_subset_accuracy"])
    assert exact / len(truth) >= 0.9
    assert any(len(p["labels"]) == 2 for p in predictions)
    for prediction in predictions:
        assert 0.0 <= prediction["score"] <= 1.0
        over = {entry["label"] for entry in prediction["top_k"] if entry["score"] >= 0.5}
        assert over == set(prediction["labels"])
