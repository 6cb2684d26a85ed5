"""``GET /v1/models/{id}/export`` on the real stack: a full text model streams at once; a LoRA
model is merged and a ResNet linear probe rebuilt as ``ResNetForImageClassification`` by the
real worker (202 until ready); each archive, unpacked and loaded in a fresh process by plain
``transformers`` with its own tokenizer or processor, predicts the labels and scores the
service predicts. A head that maps onto no classification model is refused (422), an unknown
or another tenant's model is not found, and deleting a model removes its exports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stack
from worker.testing import learnable_images

pytestmark = pytest.mark.integration

TEXTS = ["alpha alpha kalo", "beta beta mino", "kalo", "alpha beta mino"]
#: plain transformers in a fresh process: the directory, "text" or "image", the inputs (JSON)
LOAD_AND_PREDICT = """
import json, sys
import torch
from PIL import Image
from transformers import (AutoImageProcessor, AutoModelForImageClassification,
                          AutoModelForSequenceClassification, AutoTokenizer)
directory, kind, inputs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if kind == "image":
    processor = AutoImageProcessor.from_pretrained(directory)
    model = AutoModelForImageClassification.from_pretrained(directory)
    batch = processor(images=[Image.open(p).convert("RGB") for p in inputs], return_tensors="pt")
else:
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory)
    batch = tokenizer(inputs, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    probs = model.eval()(**batch).logits.softmax(-1)
names = model.config.id2label
print(json.dumps([{names[i]: float(p[i]) for i in range(len(p))} for p in probs]))
"""


def _wait_job(stack: Stack, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = dict(stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json())
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            assert job["status"] == "succeeded", (job, stack.worker.tail())
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {stack.worker.tail()}")


def _image_dataset(stack: Stack) -> str:
    images, labels = learnable_images(12, 5)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            archive.writestr(f"{label}/{index:03d}.png", image)
    r = stack.client.post(
        "/v1/datasets",
        headers=stack.headers,
        files={"file": ("images.zip", buffer.getvalue(), "application/zip")},
        data={"task": "image-classification"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def models(stack: Stack) -> dict[str, str]:
    """Model ids by name, their jobs trained side by side on the real worker."""
    text, images = stack.upload_learnable(24, seed=31), _image_dataset(stack)
    submitted = {
        "full": ("tiny-bert", text, {"name": "full"}, {"learning_rate": 3e-3}),
        "lora": ("tiny-bert", text, {"name": "lora", "r": 4}, {"learning_rate": 3e-3}),
        "text_head": ("tiny-bert", text, {"name": "linear_probe"}, {}),
        "lora_spare": ("tiny-bert", text, {"name": "lora", "r": 2}, {"learning_rate": 3e-3}),
        "image_probe": (
            "tiny-resnet",
            images,
            {"name": "linear_probe", "pooling": "pooler"},
            {"epochs": 8, "learning_rate": 1e-1},
        ),
    }
    jobs = {}
    for name, (base, dataset, strategy, hp) in submitted.items():
        body = {
            "base_model": base,
            "dataset_id": dataset,
            "strategy": strategy,
            "hyperparameters": {"epochs": 3, "batch_size": 8, "max_length": 32, **hp},
        }
        r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
        assert r.status_code == 201, r.text
        jobs[name] = r.json()["id"]
    return {name: str(_wait_job(stack, job_id)["model_id"]) for name, job_id in jobs.items()}


def _export(stack: Stack, model_id: str, timeout: float = 240, **params: str) -> httpx.Response:
    """The export's archive, waiting through 202s as a client does (``Retry-After``)."""
    url = f"/v1/models/{model_id}/export"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stack.client.get(url, headers=stack.headers, params=params)
        if r.status_code != 202:
            return r
        status = r.json()
        assert status["model_id"] == model_id and status["status"] in {"queued", "running"}
        assert int(r.headers["Retry-After"]) >= 1
        time.sleep(0.5)
    raise AssertionError(f"export of {model_id} not ready: {stack.worker.tail()}")


def _unpack(response: httpx.Response, model_id: str, dest: Path, variant: str) -> Path:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="{model_id}-{variant}.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        assert {name.split("/")[0] for name in archive.getnames()} == {model_id}
        archive.extractall(dest, filter="data")
    directory = dest / model_id
    assert "path" not in json.loads((directory / "manifest.json").read_text())["base_model"]
    return directory


def _plain_scores(directory: Path, kind: str, inputs: list[str], cwd: Path) -> list[Any]:
    """Scores by label from plain transformers in a fresh process that cannot import us."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(directory), kind, json.dumps(inputs)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _agree(served: list[dict[str, Any]], plain: list[dict[str, float]]) -> None:
    assert len(served) == len(plain)
    for prediction, scores in zip(served, plain, strict=True):
        assert prediction["label"] == max(scores, key=lambda label: scores[label])
        for entry in prediction["top_k"]:
            assert entry["score"] == pytest.approx(scores[entry["label"]], abs=1e-4)


def _served_texts(stack: Stack, model_id: str) -> list[dict[str, Any]]:
    r = stack.client.post(
        f"/v1/models/{model_id}/predict",
        headers=stack.headers,
        json={"inputs": TEXTS, "top_k": 2},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["predictions"])


def test_a_full_text_model_exports_as_it_is(
    stack: Stack, models: dict[str, str], tmp_path: Path
) -> None:
    model_id = models["full"]
    r = stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers)
    directory = _unpack(r, model_id, tmp_path, "full")
    assert json.loads((directory / "manifest.json").read_text())["kind"] == "full"
    _agree(_served_texts(stack, model_id), _plain_scores(directory, "text", TEXTS, tmp_path))


def test_a_lora_model_exports_merged_and_deleting_it_removes_the_export(
    stack: Stack, models: dict[str, str], tmp_path: Path
) -> None:
    model_id = models["lora"]
    adapter = stack.client.get(
        f"/v1/models/{model_id}/export", headers=stack.headers, params={"merge_lora": "false"}
    )
    with tarfile.open(fileobj=io.BytesIO(adapter.content), mode="r:gz") as archive:
        names = set(archive.getnames())
    assert {f"{model_id}/adapter_config.json", f"{model_id}/adapter_model.safetensors"} <= names
    merged = _export(stack, model_id)
    directory = _unpack(merged, model_id, tmp_path, "merged")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert (manifest["kind"], manifest["merged_from"]["kind"]) == ("full", "lora")
    assert not (directory / "adapter_config.json").exists()
    _agree(_served_texts(stack, model_id), _plain_scores(directory, "text", TEXTS, tmp_path))
    exports = stack.data_dir / "exports" / model_id
    assert [p.name.split("-")[0] for p in exports.iterdir()] == ["merged"]  # no temporaries
    again = stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers)
    assert again.status_code == 200 and again.content == merged.content  # built once
    assert stack.client.delete(f"/v1/models/{model_id}", headers=stack.headers).status_code == 204
    assert not exports.exists()
    gone = stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers)
    assert gone.status_code == 404, gone.text


def test_an_image_probe_exports_as_a_resnet_classifier(
    stack: Stack, models: dict[str, str], tmp_path: Path
) -> None:
    model_id = models["image_probe"]
    as_is = _unpack(
        stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers),
        model_id,
        tmp_path / "head",
        "head",
    )
    assert {"manifest.json", "head.safetensors", "preprocessor_config.json"} <= {
        p.name for p in as_is.iterdir()
    }
    directory = _unpack(
        _export(stack, model_id, as_full="true"), model_id, tmp_path / "full", "full"
    )
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["ResNetForImageClassification"]
    images, _ = learnable_images(3, seed=99)
    paths = []
    for index, data in enumerate(images):
        (tmp_path / f"{index}.png").write_bytes(data)
        paths.append(str(tmp_path / f"{index}.png"))
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    r = stack.client.post(
        f"/v1/models/{model_id}/predict", headers=stack.headers, files=files, data={"top_k": "2"}
    )
    assert r.status_code == 200, r.text
    _agree(r.json()["predictions"], _plain_scores(directory, "image", paths, tmp_path))


def test_what_cannot_be_exported_is_refused(stack: Stack, models: dict[str, str]) -> None:
    from app.db import session_scope
    from app.tenants.service import create_key

    head = models["text_head"]
    r = stack.client.get(
        f"/v1/models/{head}/export", headers=stack.headers, params={"as_full": "true"}
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "export_unsupported"
    assert (
        "BertForSequenceClassification" in error["message"]
        and "without `as_full`" in (error["message"])
    )
    assert error["details"] == {"model_type": "bert", "pooling": "cls"}
    unknown = stack.client.get("/v1/models/mdl_nope/export", headers=stack.headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    with session_scope() as session:
        _, key = create_key(session, tenant_name="export-stranger")
    stranger = {"Authorization": f"Bearer {key}"}
    for model_id in models.values():
        r = stack.client.get(f"/v1/models/{model_id}/export", headers=stranger)
        assert r.status_code == 404, r.text


def _shift_export(model_id: str, **values: Any) -> None:
    """Set columns of the model's export row, as a crash or time would leave them."""
    from sqlalchemy import update

    from app.db import session_scope
    from app.orm import ModelExport

    with session_scope() as session:
        stmt = update(ModelExport).where(ModelExport.model_id == model_id).values(**values)
        session.execute(stmt)


def test_a_failed_build_answers_its_error_then_retries_and_a_lost_one_is_rebuilt(
    stack: Stack, models: dict[str, str]
) -> None:
    from datetime import UTC, datetime, timedelta

    model_id = models["lora_spare"]
    weights = stack.data_dir / "models" / model_id / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original + b"altered")
    failed = _export(stack, model_id)
    assert failed.status_code == 409, failed.text
    error = failed.json()["error"]
    assert error["code"] == "artifact_unusable" and "sha256" in error["message"]
    assert str(stack.data_dir) not in error["message"]
    assert error["details"]["variant"] == "merged"
    again = stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers)
    assert again.status_code == 409  # a failure stands until it is old
    weights.write_bytes(original)
    long_ago = datetime.now(UTC) - timedelta(minutes=11)
    _shift_export(model_id, finished_at=long_ago)
    first = _export(stack, model_id)
    assert first.status_code == 200, first.text
    # the worker died while building it again: the lease expired, the archive is not there
    _shift_export(
        model_id,
        status="running",
        lease_token="lost",
        lease_expires_at=long_ago,
        archive_path=None,
        finished_at=None,
    )
    retried = stack.client.get(f"/v1/models/{model_id}/export", headers=stack.headers)
    assert retried.status_code == 202 and retried.json()["status"] == "queued", retried.text
    rebuilt = _export(stack, model_id)
    assert rebuilt.status_code == 200, rebuilt.text
    with tarfile.open(fileobj=io.BytesIO(rebuilt.content), mode="r:gz") as archive:
        assert f"{model_id}/model.safetensors" in archive.getnames()
