"""The pre-flight audit on image datasets: duplicates by image content (whatever the file
names), overlaps between training and test, few images per class; no token counts."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.image_zips import class_folders, image_bytes, upload_zip, zip_bytes
from tests.conftest import reset_caches

BASE = "tiny-image-model"


@pytest.fixture
def api_env(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shared environment plus an image base model: a ResNet config, an image processor
    config and a safetensors file of one tensor (the registry reads only headers)."""
    model = api_env.parent / "base-models" / BASE
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    (model / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 32}}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    monkeypatch.setenv("TUNESERVE_BASE_MODELS_DIR", str(model.parent))
    reset_caches()
    yield api_env


def _dataset(client: TestClient, auth: dict[str, str], entries: dict[str, bytes]) -> str:
    r = upload_zip(client, auth, zip_bytes(entries))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _submit(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    payload = {"base_model": BASE, "strategy": {"name": "linear_probe"}, **body}
    return client.post("/v1/jobs", headers=auth, json=payload)


def test_duplicates_are_found_by_content(client: TestClient, auth: dict[str, str]) -> None:
    entries = class_folders({"cat": 10, "dog": 10})
    copy = entries["cat/000.png"]
    entries["dog/copy-under-another-name.png"] = copy
    r = _submit(client, auth, dataset_id=_dataset(client, auth, entries))
    assert r.status_code == 201, r.text
    findings = {f["code"]: f for f in r.json()["audit"]}
    risk = findings["leakage_risk"]
    assert risk["data"]["duplicate_rows"] == 1 and "image" in risk["message"]
    assert any(e.endswith(".png") for e in risk["data"]["examples"])
    assert "truncation" not in findings  # images have no tokens


def test_a_test_set_holding_training_images_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    train = class_folders({"cat": 10, "dog": 10})
    test = {name.replace("/", "/t-"): data for name, data in train.items()}
    r = _submit(
        client,
        auth,
        dataset_id=_dataset(client, auth, train),
        test_dataset_id=_dataset(client, auth, test),
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "audit_failed"
    [leak] = [f for f in r.json()["error"]["details"]["findings"] if f["code"] == "leakage"]
    assert leak["data"]["rows"] == 20 and leak["data"]["split"] == "test"


def test_few_images_in_a_class_are_flagged(client: TestClient, auth: dict[str, str]) -> None:
    entries = class_folders({"cat": 12, "dog": 2})
    entries["dog/extra.png"] = image_bytes((30, 30), (1, 2, 3))
    r = _submit(client, auth, dataset_id=_dataset(client, auth, entries))
    assert r.status_code == 201, r.text  # a warning: the job is still created
    [few] = [f for f in r.json()["audit"] if f["code"] == "few_examples"]
    assert few["severity"] == "warning" and few["data"]["classes"] == {"dog": 3}
