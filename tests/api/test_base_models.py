"""``GET /v1/base-models`` lists text encoders, GPT-2 decoders, image models and CLIP, each with
its modality, family and the tasks it can train, from real (tiny, random) HF directories."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches

TEXT_TASKS = ["text-classification", "text-multilabel", "text-pair-classification"]
IMAGE_TASKS = ["image-classification", "image-multilabel"]
#: listed id -> the session fixture that builds it
DIRECTORIES = {
    "tiny-bert": "tiny_bert_dir",
    "tiny-gpt2": "tiny_gpt2_dir",
    "tiny-resnet": "tiny_resnet_dir",
    "tiny-vit": "tiny_vit_dir",
    "tiny-convnext": "tiny_convnext_dir",
    "tiny-mobilenet-v2": "tiny_mobilenet_v2_dir",
    "tiny-clip": "tiny_clip_dir",
}


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.testing import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def api_env(
    api_env: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """The shared environment plus a base-models directory holding a copy of every tiny model,
    an image model whose processor config is missing and a model with pickle weights only."""
    root = api_env.parent / "base-models"
    for model_id, fixture in DIRECTORIES.items():
        shutil.copytree(request.getfixturevalue(fixture), root / model_id)
    no_processor = root / "resnet-no-processor"
    shutil.copytree(root / "tiny-resnet", no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    pickled = root / "vit-pickle-only"
    shutil.copytree(root / "tiny-vit", pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(root))
    monkeypatch.setenv("TUNESERVE_INCLUDE_PACKAGED_MODELS", "false")
    reset_caches()
    yield api_env


def _listed(client: TestClient, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = client.get("/v1/base-models", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return {m["id"]: m for m in r.json()["data"]}


def test_every_family_is_listed_with_what_it_trains(
    client: TestClient, auth: dict[str, str]
) -> None:
    models = _listed(client, auth)
    assert sorted(models) == sorted(DIRECTORIES)

    bert = models["tiny-bert"]
    assert (bert["modality"], bert["family"], bert["tasks"]) == ("text", "encoder", TEXT_TASKS)
    assert bert["task_families"] == ["text"] and bert["max_length"] == 64
    assert bert["image_size"] is None and bert["zero_shot"] is False

    gpt2 = models["tiny-gpt2"]
    assert (gpt2["modality"], gpt2["family"], gpt2["tasks"]) == ("text", "decoder", TEXT_TASKS)
    assert gpt2["model_type"] == "gpt2" and gpt2["architecture"] == "GPT2LMHeadModel"
    assert gpt2["task_families"] == ["text"] and gpt2["max_length"] == 64  # n_positions

    for model_id, model_type, family, architecture in (
        ("tiny-resnet", "resnet", "convnet", "ResNetForImageClassification"),
        ("tiny-convnext", "convnext", "convnet", "ConvNextForImageClassification"),
        ("tiny-mobilenet-v2", "mobilenet_v2", "convnet", "MobileNetV2ForImageClassification"),
        ("tiny-vit", "vit", "vision-transformer", "ViTForImageClassification"),
    ):
        model = models[model_id]
        assert model["modality"] == "image", model_id
        assert (model["model_type"], model["family"]) == (model_type, family)
        assert model["architecture"] == architecture
        assert model["tasks"] == IMAGE_TASKS and model["task_families"] == ["image"]
        assert model["image_size"] == 32 and model["max_length"] is None
        assert model["zero_shot"] is False and model["pooling"] is None
        assert model["parameter_count"] > 0

    clip = models["tiny-clip"]
    assert (clip["modality"], clip["family"]) == ("image-text", "dual-encoder")
    assert clip["tasks"] == IMAGE_TASKS and clip["task_families"] == ["image"]
    assert clip["zero_shot"] is True
    assert clip["image_size"] == 32 and clip["max_length"] == 64


def test_parameter_counts_come_from_the_safetensors_header(
    client: TestClient, auth: dict[str, str], tiny_vit_dir: Path
) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_vit_dir / "model.safetensors"), framework="np") as weights:
        expected = sum(
            math.prod(weights.get_slice(name).get_shape())
            for name in weights.keys()  # noqa: SIM118 (safe_open is not a mapping)
        )
    assert _listed(client, auth)["tiny-vit"]["parameter_count"] == expected


def test_openapi_documents_the_new_fields(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["BaseModelRead"]
    for name in ("modality", "family", "tasks", "zero_shot", "image_size"):
        assert schema["properties"][name].get("description"), name
    modality = json.dumps(schema["properties"]["modality"])
    assert all(value in modality for value in ("text", "image", "image-text"))
