"""A ``head`` artifact exported ``as_full``: the architecture's own classification model with
the head in its classifier computes the served probe's logits, loaded by plain
``transformers``; every entry of ``app.models.export_rules.OWN_HEADS`` is checked here, and
the pairs the table refuses are refused before and after loading. Also the archive the
worker writes: bounded chunks, the artifact's files whole, no server path in the manifest."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import LinearProbeStrategy
from app.models.export_archive import artifact_tar_gz
from app.models.export_rules import OWN_HEADS, HeadNotConvertible, own_head_for
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.export import export_head_as_full
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.testing import learnable_examples, learnable_images
from worker.training.callbacks import NullCallbacks

LABELS = ["A", "B"]
CPU = torch.device("cpu")
#: (fixture of the base, pooling its own classifier reads): every entry of OWN_HEADS
CONVERTIBLE = [
    ("tiny_resnet_dir", "resnet", "pooler"),
    ("tiny_mobilenet_v2_dir", "mobilenet_v2", "pooler"),
    ("tiny_convnext_dir", "convnext", "pooler"),
    ("tiny_vit_dir", "vit", "cls"),
    ("tiny_bert_dir", "bert", "pooler"),
]


def _probe(
    base: Path, pooling: str, dest: Path, requested: str | None = None
) -> tuple[Path, list[Any]]:
    """A trained linear probe's head artifact over ``base`` (pooled by ``pooling``, asked for
    as ``requested``) and a few inputs for it."""
    images = (base / "preprocessor_config.json").is_file()
    if images:
        data, names = learnable_images(8, seed=3)
        train = Examples([], [LABELS.index(n) for n in names], images=data)
        inputs: list[Any] = learnable_images(3, seed=4)[0]
    else:
        texts, names = learnable_examples(12, seed=3)
        train = Examples(texts, [LABELS.index(n) for n in names])
        inputs = learnable_examples(3, seed=4)[0]
    trained = train_model(
        base_model_dir=base,
        task="image-classification" if images else "text-classification",
        label_names=LABELS,
        train=train,
        validation=train,
        strategy=LinearProbeStrategy(pooling=requested or pooling),  # type: ignore[arg-type]
        hp=Hyperparameters(epochs=2, batch_size=8, learning_rate=1e-1, seed=0),
        callbacks=NullCallbacks(),
    )
    assert trained.kind == "head" and trained.pooling == pooling
    return write_artifact(trained, dest, manifest={"base_model": {"id": base.name}}), inputs


def _plain_logits(directory: Path, inputs: list[Any]) -> torch.Tensor:
    """What a user computes: Auto classes and the directory's own tokenizer or processor."""
    if (directory / "preprocessor_config.json").is_file():
        processor = AutoImageProcessor.from_pretrained(directory)
        model: Any = AutoModelForImageClassification.from_pretrained(directory)
        pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in inputs]
        encoded = processor(images=pictures, return_tensors="pt")
    else:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForSequenceClassification.from_pretrained(directory)
        encoded = tokenizer(inputs, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**encoded).logits.float()


@pytest.mark.parametrize(("fixture", "model_type", "pooling"), CONVERTIBLE)
def test_a_head_as_full_computes_the_served_logits(
    request: pytest.FixtureRequest, fixture: str, model_type: str, pooling: str, tmp_path: Path
) -> None:
    base: Path = request.getfixturevalue(fixture)
    assert json.loads((base / "config.json").read_text())["model_type"] == model_type
    artifact, inputs = _probe(base, pooling, tmp_path / "head")
    full = export_head_as_full(artifact, tmp_path / "full")
    served = load_predictor(artifact, device=CPU).logits(inputs)
    plain = _plain_logits(full, inputs)
    assert plain.shape == (len(inputs), len(LABELS))
    assert served.abs().max() > 1e-3  # a head that learned something, not zeros
    torch.testing.assert_close(plain, served, atol=1e-5, rtol=1e-5)
    manifest = json.loads((full / "manifest.json").read_text())
    assert manifest["kind"] == "full"
    assert manifest["converted_from"]["architecture"] == OWN_HEADS[model_type].architecture
    config = json.loads((full / "config.json").read_text())
    assert config["id2label"] == {"0": "A", "1": "B"}


def test_every_rule_is_checked_here() -> None:
    assert {(t, p) for _, t, p in CONVERTIBLE} == {(t, h.reads) for t, h in OWN_HEADS.items()}


@pytest.mark.parametrize(
    ("fixture", "pooling", "says"),
    [
        ("tiny_bert_dir", "mean", "BertForSequenceClassification classifies the pooler output"),
        ("tiny_vit_dir", "pooler", "ViTForImageClassification classifies the final [CLS]"),
        ("tiny_clip_dir", "embeds", "No plain transformers classification model of type 'clip'"),
    ],
)
def test_a_head_on_another_vector_is_refused(
    request: pytest.FixtureRequest, fixture: str, pooling: str, says: str, tmp_path: Path
) -> None:
    base: Path = request.getfixturevalue(fixture)
    model_type = json.loads((base / "config.json").read_text())["model_type"]
    with pytest.raises(HeadNotConvertible, match=re.escape(says)):
        own_head_for(model_type, pooling)
    requested = "auto" if pooling == "embeds" else pooling  # CLIP's own pooling
    artifact, _ = _probe(base, pooling, tmp_path / "head", requested)
    with pytest.raises(HeadNotConvertible, match=re.escape(says)):
        export_head_as_full(artifact, tmp_path / "full")
    assert not (tmp_path / "full").exists()


def test_the_archive_streams_the_artifact_in_bounded_chunks(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    artifact, _ = _probe(tiny_bert_dir, "pooler", tmp_path / "head")
    full = export_head_as_full(artifact, tmp_path / "full")
    chunk = 1 << 12
    chunks = list(artifact_tar_gz(full, arcname="mdl_x", chunk_size=chunk))
    weights = (full / "model.safetensors").stat().st_size
    assert weights > 4 * chunk and len(chunks) > 4
    assert max(len(c) for c in chunks) <= chunk  # never the whole archive at once
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as archive:
        names = archive.getnames()
        out = tmp_path / "out"
        archive.extractall(out, filter="data")
    expected = sorted(p.relative_to(full).as_posix() for p in full.rglob("*"))
    assert names == ["mdl_x"] + [f"mdl_x/{name}" for name in expected]
    for name in expected:
        if name != "manifest.json" and (full / name).is_file():
            assert (out / "mdl_x" / name).read_bytes() == (full / name).read_bytes(), name
    manifest = json.loads((out / "mdl_x" / "manifest.json").read_text())
    original = json.loads((full / "manifest.json").read_text())
    assert "path" in original["base_model"]
    assert manifest["base_model"] == {"id": tiny_bert_dir.name}
    assert {k: v for k, v in manifest.items() if k != "base_model"} == {
        k: v for k, v in original.items() if k != "base_model"
    }
