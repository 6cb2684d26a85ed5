"""Artifacts: self-describing, loadable by plain transformers (full), head-only (probe),
verified by sha256 on load, and atomic (a failed write leaves nothing behind)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.artifacts import write_artifact
from worker.serving.predictor import ArtifactError, load_predictor

MANIFEST = {"base_model": {"id": "tiny-bert"}, "hyperparameters": {"epochs": 3}}


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_full_artifact_loads_with_plain_transformers(
    trained_full: Any, tmp_path: Path, learnable_split: Any
) -> None:
    dest = write_artifact(trained_full, tmp_path / "models" / "m1", manifest=MANIFEST)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["kind"] == "full"
    assert manifest["labels"] == ["A", "B"]
    assert manifest["hyperparameters"] == {"epochs": 3}
    assert manifest["base_model"] == {"id": "tiny-bert", "path": str(trained_full.base_model_dir)}
    on_disk = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert "model.safetensors" in on_disk
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in on_disk)

    model = AutoModelForSequenceClassification.from_pretrained(dest).eval()
    tokenizer = AutoTokenizer.from_pretrained(dest)
    assert model.config.id2label == {0: "A", 1: "B"}
    assert model.config.problem_type == "single_label_classification"
    texts = learnable_split()[1].texts
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    expected = torch.softmax(logits, dim=-1)

    predictions = load_predictor(dest, device=torch.device("cpu")).predict(texts, top_k=2)
    for row, prediction in zip(expected, predictions, strict=True):
        assert prediction["label"] == model.config.id2label[int(row.argmax())]
        scores = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        assert scores["A"] == pytest.approx(float(row[0]), abs=1e-5)
        assert scores["B"] == pytest.approx(float(row[1]), abs=1e-5)


def test_probe_artifact_is_head_only_and_predicts(
    trained_probe: Any, trained_full: Any, tmp_path: Path, learnable_split: Any, tiny_bert_dir: Path
) -> None:
    head_dir = write_artifact(trained_probe, tmp_path / "head", manifest=MANIFEST)
    full_dir = write_artifact(trained_full, tmp_path / "full", manifest=MANIFEST)
    manifest = json.loads((head_dir / "manifest.json").read_text())
    assert manifest["kind"] == "head"
    assert manifest["head"]["pooling"] == "cls"
    assert manifest["base_model"]["id"] == "tiny-bert"
    assert not (head_dir / "model.safetensors").exists()
    assert (head_dir / "head.safetensors").stat().st_size < 2_000
    assert _size(head_dir) * 3 < _size(full_dir)

    validation = learnable_split()[1]
    resolved: list[str] = []

    def resolve(base_id: str) -> Path:
        resolved.append(base_id)
        return tiny_bert_dir

    predictor = load_predictor(head_dir, resolve_base=resolve)
    assert resolved == ["tiny-bert"]
    predicted = [p["label"] for p in predictor.predict(validation.texts)]
    truth = ["AB"[label] for label in validation.labels]  # type: ignore[index]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert accuracy == pytest.approx(trained_probe.metrics["val_accuracy"])
    assert accuracy >= 0.9
    # an unknown id falls back to the stored path
    fallback = load_predictor(head_dir, resolve_base=lambda base_id: None)
    assert [p["label"] for p in fallback.predict(validation.texts)] == predicted
    assert fallback.nbytes > 0


def test_sha256_mismatch_refuses_to_load(trained_probe: Any, tmp_path: Path) -> None:
    dest = write_artifact(trained_probe, tmp_path / "m", manifest=MANIFEST)
    tampered = tmp_path / "tampered"
    shutil.copytree(dest, tampered)
    weights = tampered / "head.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"head\.safetensors.*sha256"):
        load_predictor(tampered)
    (tampered / "head.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_predictor(tampered)


def test_failed_write_leaves_nothing(trained_full: Any, tmp_path: Path) -> None:
    parent = tmp_path / "models"
    with pytest.raises(TypeError):
        write_artifact(trained_full, parent / "m", manifest={"not_json": object()})
    assert list(parent.iterdir()) == []


def test_existing_destination_is_refused(trained_probe: Any, tmp_path: Path) -> None:
    dest = write_artifact(trained_probe, tmp_path / "m", manifest=MANIFEST)
    with pytest.raises(FileExistsError):
        write_artifact(trained_probe, dest, manifest=MANIFEST)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
