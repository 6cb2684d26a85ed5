"""The tiny random model directories load through the Auto classes offline and run a forward."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoProcessor,
    AutoTokenizer,
)

from worker.testing_models import IMAGE_SIZE, NUM_LABELS, tiny_vit_dir

IMAGE_FIXTURES = ["tiny_resnet_dir", "tiny_vit_dir", "tiny_convnext_dir", "tiny_mobilenet_v2_dir"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8)).convert("RGB"),
    ]


@pytest.mark.parametrize("fixture", IMAGE_FIXTURES)
def test_image_classifier_loads_and_runs(fixture: str, request: pytest.FixtureRequest) -> None:
    directory: Path = request.getfixturevalue(fixture)
    assert (directory / "model.safetensors").is_file()
    assert (directory / "preprocessor_config.json").is_file()
    processor = AutoImageProcessor.from_pretrained(directory)
    pixels = processor(images=_images(), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (2, 3, IMAGE_SIZE, IMAGE_SIZE)

    model = AutoModelForImageClassification.from_pretrained(
        directory, use_safetensors=True, trust_remote_code=False
    ).eval()
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    assert tuple(logits.shape) == (2, NUM_LABELS)
    assert torch.isfinite(logits).all()

    backbone = AutoModel.from_pretrained(directory, use_safetensors=True).eval()
    with torch.no_grad():
        output = backbone(pixel_values=pixels)
    assert output.pooler_output.shape[0] == 2


def test_clip_loads_and_scores_images_against_texts(tiny_clip_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    assert type(processor).__name__ == "CLIPProcessor"
    assert type(AutoImageProcessor.from_pretrained(tiny_clip_dir)).__name__.startswith(
        "CLIPImageProcessor"
    )
    model = AutoModel.from_pretrained(tiny_clip_dir, use_safetensors=True).eval()
    inputs = processor(
        text=["a photo of a cat", "a photo of the big red dog"],
        images=_images(),
        return_tensors="pt",
        padding=True,
    )
    tokenizer = processor.tokenizer
    assert inputs["input_ids"][0, 0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id in inputs["input_ids"][0].tolist()
    with torch.no_grad():
        output = model(**inputs)
    assert tuple(output.logits_per_image.shape) == (2, 2)
    assert torch.isfinite(output.logits_per_image).all()
    with torch.no_grad():
        features = model.get_image_features(pixel_values=inputs["pixel_values"])
    features = getattr(features, "pooler_output", features)
    assert features.shape[-1] == model.config.projection_dim


def test_gpt2_loads_as_a_sequence_classifier(tiny_gpt2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    assert tokenizer.pad_token is None
    ids = tokenizer("a photo of the cat")["input_ids"]
    assert tokenizer.decode(ids) == "a photo of the cat"
    tokenizer.pad_token = tokenizer.eos_token

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_gpt2_dir, use_safetensors=True, num_labels=2
    ).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    batch = tokenizer(["a cat", "the big red dog"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert tuple(logits.shape) == (2, 2)
    assert torch.isfinite(logits).all()


def test_builds_are_deterministic(tmp_path: Path) -> None:
    digests = {
        hashlib.sha256((tiny_vit_dir(tmp_path / name) / "model.safetensors").read_bytes()).digest()
        for name in ("one", "two")
    }
    assert len(digests) == 1
