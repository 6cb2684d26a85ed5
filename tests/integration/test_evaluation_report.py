"""A job's evaluation on a real worker: selection, test set, calibration, report and plots."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_train_and_serve import TERMINAL, _csv, _events, _upload, _wait
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _csv_rows(texts: list[str], labels: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels, strict=True))
    return buf.getvalue().encode()


def test_report_with_test_set_calibration_and_plots(stack: Stack) -> None:
    dataset_id = _upload(stack, _csv(40))
    test_texts, test_labels = learnable_examples(15, seed=123)
    test_id = _upload(stack, _csv_rows(test_texts, test_labels))
    body = {
        "base_model": "tiny-bert",
        "dataset_id": dataset_id,
        "test_dataset_id": test_id,
        "strategy": {"name": "linear_probe"},
        "hyperparameters": {
            "epochs": 12,
            "batch_size": 8,
            "max_length": 32,
            "learning_rate": 0.05,
            "validation_fraction": 0.25,
            "temperature_scaling": True,
            "early_stopping": {"metric": "val_loss", "patience": 2},
        },
    }
    r = stack.client.post("/v1/jobs", headers=stack.headers, json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json()["test_dataset_id"] == test_id
    early = stack.client.get(f"/v1/jobs/{job_id}/report", headers=stack.headers)
    if early.status_code != 200:  # not finished yet (it may be, on a fast machine)
        assert early.status_code == 409 and early.json()["error"]["code"] == "report_not_ready"

    done = _wait(stack, job_id, TERMINAL)
    assert done["status"] == "succeeded", (done, stack.worker_log.read_text()[-4000:])
    metrics, selection = done["metrics"], done["selection"]
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert {"test_loss", "test_macro_f1", "test_micro_f1", "test_ece", "val_ece"} <= set(metrics)
    assert metrics["temperature"] > 0
    assert metrics["trainable_parameters"] == 2 * 32 + 2  # the tiny BERT's hidden size is 32
    assert metrics["val_loss"] == pytest.approx(selection["selected"]["val_loss"])
    kinds = [e["kind"] for e in _events(stack, job_id)]
    assert "evaluating" in kinds
    if selection["stopped_early"]:
        assert "early_stopped" in kinds

    report = stack.client.get(f"/v1/jobs/{job_id}/report", headers=stack.headers).json()
    assert report["job_id"] == job_id and report["model_id"] == done["model_id"]
    assert report["labels"] == ["A", "B"]
    assert selection.pop("bakeoff") is None  # only an auto job has one
    assert report["selection"] == selection
    assert len(report["history"]) == selection["evaluations"]
    assert {"epoch", "step", "train_loss", "val_loss", "val_accuracy"} <= set(report["history"][0])
    validation = report["validation"]
    matrix = validation["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == validation["examples"] == 20  # 25% of 80
    assert [row["label"] for row in validation["per_class"]] == ["A", "B"]
    # the served model on validation is the selected evaluation, to float rounding
    assert validation["accuracy"] == pytest.approx(selection["selected"]["val_accuracy"])
    assert validation["loss"] == pytest.approx(selection["selected"]["val_loss"], abs=1e-4)
    assert report["test"]["examples"] == 30
    assert report["test"]["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert report["calibration"]["temperature"] == pytest.approx(metrics["temperature"])
    assert report["cost"]["artifact_bytes"] > 0

    assert set(report["plots"]) == {"curves", "confusion_matrix", "calibration"}
    for name, url in report["plots"].items():
        png = stack.client.get(url, headers=stack.headers)
        assert png.status_code == 200, name
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG_SIGNATURE) and len(png.content) > 2000
    missing = stack.client.get(f"/v1/jobs/{job_id}/report/plots/nope.png", headers=stack.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # served scores carry the temperature: the top score is softmax(logits / T)
    r = stack.client.post(
        f"/v1/models/{done['model_id']}/predict",
        headers=stack.headers,
        json={"inputs": test_texts[:5]},
    )
    assert r.status_code == 200
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    correct = sum(p["label"] == y for p, y in zip(predictions, test_labels[:5], strict=True))
    assert correct >= 4
