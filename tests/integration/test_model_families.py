"""Model families beyond BERT through the API on a real worker: a GPT-2-style decoder (text,
trained and served) and image classifiers (a zip of class folders, trained, and served on
image files sent as multipart or as base64 JSON)."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from typing import Any

import pytest

from tests.integration.conftest import Stack
from worker.testing import learnable_images

pytestmark = pytest.mark.integration


def _wait(stack: Stack, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = dict(stack.client.get(f"/v1/jobs/{job_id}", headers=stack.headers).json())
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {stack.worker.tail()}")


def _submit(
    stack: Stack, base: str, dataset_id: str, strategy: dict[str, Any], **hp: Any
) -> dict[str, Any]:
    body = {
        "base_model": base,
        "dataset_id": dataset_id,
        "strategy": strategy,
        "hyperparameters": {
            "epochs": 2,
            "batch_size": 8,
            "max_length": 32,
            "learning_rate": 3e-3,
            **hp,
        },
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    job = _wait(stack, r.json()["id"])
    assert job["status"] == "succeeded", (job, stack.worker.tail())
    return job


@pytest.fixture(scope="module")
def text_dataset(stack: Stack) -> str:
    return stack.upload_learnable(24, seed=21)


@pytest.mark.parametrize("strategy", [{"name": "linear_probe"}, {"name": "lora", "r": 4}])
def test_a_gpt2_decoder_trains_and_serves(
    stack: Stack, text_dataset: str, strategy: dict[str, Any]
) -> None:
    job = _submit(stack, "tiny-gpt2", text_dataset, strategy)
    r = stack.client.post(
        f"/v1/models/{job['model_id']}/predict",
        headers=stack.headers,
        json={"inputs": ["alpha alpha kalo", "beta beta mino", "kalo"], "top_k": 2},
    )
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 3
    assert all({s["label"] for s in p["top_k"]} == {"A", "B"} for p in predictions)


def class_folder_zip(n_per_class: int, seed: int) -> bytes:
    images, labels = learnable_images(n_per_class, seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            archive.writestr(f"{label}/{index:03d}.png", image)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("base", "strategy", "hp"),
    [
        ("tiny-resnet", {"name": "full"}, {}),
        ("tiny-resnet", {"name": "linear_probe"}, {"learning_rate": None, "epochs": 8}),
        ("tiny-clip", {"name": "lora", "r": 4}, {}),
    ],
)
def test_an_image_model_trains_on_a_zip_of_class_folders(
    stack: Stack, base: str, strategy: dict[str, Any], hp: dict[str, Any]
) -> None:
    r = stack.client.post(
        "/v1/datasets",
        headers=stack.headers,
        files={"file": ("images.zip", class_folder_zip(12, 5), "application/zip")},
        data={"task": "image-classification"},
    )
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert sorted(dataset["labels"]) == ["A", "B"]
    job = _submit(stack, base, dataset["id"], strategy, **hp)
    assert job["metrics"]["val_accuracy"] >= 0.5
    report = stack.client.get(f"/v1/jobs/{job['id']}/report", headers=stack.headers)
    assert report.status_code == 200, report.text
    images, _ = learnable_images(3, seed=99)
    url = f"/v1/models/{job['model_id']}/predict"
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    by_form = stack.client.post(url, headers=stack.headers, files=files, data={"top_k": "2"})
    assert by_form.status_code == 200, (by_form.text, stack.worker.tail())
    predictions = by_form.json()["predictions"]
    assert len(predictions) == len(images)
    assert all({s["label"] for s in p["top_k"]} == {"A", "B"} for p in predictions)
    encoded = [base64.b64encode(data).decode("ascii") for data in images]
    by_json = stack.client.post(url, headers=stack.headers, json={"images": encoded, "top_k": 2})
    assert by_json.status_code == 200, by_json.text
    assert by_json.json()["predictions"] == predictions
    text = stack.client.post(url, headers=stack.headers, json={"inputs": ["not an image"]})
    assert text.status_code == 422, text.text
    assert text.json()["error"]["code"] == "wrong_input_kind"


def test_clip_zero_shot_needs_no_training_and_is_refused_elsewhere(stack: Stack) -> None:
    r = stack.client.post(
        "/v1/datasets",
        headers=stack.headers,
        files={"file": ("images.zip", class_folder_zip(6, 7), "application/zip")},
        data={"task": "image-classification"},
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    strategy = {"name": "zero_shot", "templates": ["a photo of {}", "{} in a picture"]}
    job = _submit(stack, "tiny-clip", dataset_id, strategy)
    assert job["metrics"]["val_accuracy"] >= 0.0
    events = stack.client.get(f"/v1/jobs/{job['id']}/events", headers=stack.headers).json()
    assert "zero_shot" in {event["kind"] for event in events["data"]}
    refused = stack.client.post(
        "/v1/jobs",
        headers=stack.headers,
        json={"base_model": "tiny-resnet", "dataset_id": dataset_id, "strategy": strategy},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"]["field"] == "base_model"


def _image_dataset(stack: Stack, n_per_class: int, seed: int) -> str:
    r = stack.client.post(
        "/v1/datasets",
        headers=stack.headers,
        files={"file": ("images.zip", class_folder_zip(n_per_class, seed), "application/zip")},
        data={"task": "image-classification"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_an_image_sweep_ranks_promotes_and_serves_with_plots(stack: Stack) -> None:
    """A sweep on images: the probe at 1e-1 beats the one at 1e-6 (which cannot move its random
    head); the winner's report has its plots, and the promoted model predicts on files."""
    body = {
        "base_model": "tiny-resnet",
        "dataset_id": _image_dataset(stack, 16, 11),
        "strategies": [{"name": "linear_probe"}],
        "learning_rates": [1e-6, 1e-1],
        "hyperparameters": {"epochs": 4, "batch_size": 8, "validation_fraction": 0.25},
    }
    r = stack.client.post("/v1/sweeps", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    url = f"/v1/sweeps/{r.json()['id']}"
    deadline = time.monotonic() + 180
    sweep = stack.client.get(url, headers=stack.headers).json()
    while sweep["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        sweep = stack.client.get(url, headers=stack.headers).json()
    if sweep["status"] != "succeeded":
        jobs = stack.client.get("/v1/jobs", headers=stack.headers).json()["data"]
        states = [(j["id"], j["status"], j["sweep_id"]) for j in jobs[:6]]
        pytest.fail(f"{json.dumps(sweep)}\n{states}\n{stack.worker.tail()}")
    first, second = sweep["leaderboard"]
    assert (first["learning_rate"], second["learning_rate"]) == (1e-1, 1e-6)
    assert first["value"] > second["value"]
    for name in ("curves", "confusion_matrix", "calibration"):
        plot = stack.client.get(
            f"/v1/jobs/{first['job_id']}/report/plots/{name}.png", headers=stack.headers
        )
        assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG"), name
    images, labels = learnable_images(4, seed=12)
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    predicted = stack.client.post(
        f"/v1/models/{sweep['model_id']}/predict", headers=stack.headers, files=files
    )
    assert predicted.status_code == 200, predicted.text
    right = [p["label"] for p in predicted.json()["predictions"]] == labels
    assert right, (predicted.json(), labels)


def test_a_running_image_job_cancels(stack: Stack) -> None:
    body = {
        "base_model": "tiny-resnet",
        "dataset_id": _image_dataset(stack, 100, 13),
        "strategy": {"name": "full"},
        "hyperparameters": {"epochs": 100, "batch_size": 1},
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    url = f"/v1/jobs/{r.json()['id']}"
    deadline = time.monotonic() + 120
    job = stack.client.get(url, headers=stack.headers).json()
    while job["status"] in {"queued", "running"} and job["progress"]["step"] == 0:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = stack.client.get(url, headers=stack.headers).json()
    assert job["status"] == "running", job
    assert stack.client.post(f"{url}/cancel", headers=stack.headers).status_code == 200
    done = _wait(stack, job["id"], timeout=30)
    assert done["status"] == "cancelled" and done["model_id"] is None
    assert done["progress"]["step"] < done["progress"]["total_steps"]
