"""Serving precision: the agreement check, the record it leaves, and what a worker picks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from worker.serving.precision import (
    agreement_record,
    check_precision,
    checked_dtypes,
    desired_dtype,
    member_dtype,
)
from worker.serving.predictor import predictor_from_trained
from worker.testing import learnable_examples


def test_agreement_of_decisions_not_of_logits() -> None:
    reference = torch.tensor([[2.0, 1.0], [0.1, 0.2], [3.0, -1.0], [0.0, 0.5]])
    reduced = reference + torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.5, 0.0], [0.0, 0.1]])
    record = agreement_record(reference, reduced, multilabel=False, device=torch.device("cpu"))
    assert record["agreement"] == 0.75  # the second row's top label flipped
    assert record["max_abs_logit_diff"] == pytest.approx(0.5)
    assert record["examples"] == 4
    labels = agreement_record(
        torch.tensor([[1.0, -1.0], [1.0, 1.0]]),
        torch.tensor([[1.0, 0.5], [1.0, 1.0]]),
        multilabel=True,
        device=torch.device("cpu"),
    )
    assert labels["agreement"] == 0.5  # a row agrees only if its whole label set does


def test_check_precision_on_a_trained_model(trained_full: Any) -> None:
    predictor = predictor_from_trained(trained_full, device=torch.device("cpu"))
    texts, _ = learnable_examples(20, seed=41)
    record = check_precision(
        lambda dtype: predictor.logits(texts, dtype=dtype),
        multilabel=False,
        device=torch.device("cpu"),
        dtypes=[torch.bfloat16],
    )
    assert set(record) == {"bfloat16"}
    assert record["bfloat16"]["examples"] == 40
    assert 0.9 <= record["bfloat16"]["agreement"] <= 1.0
    assert 0 < record["bfloat16"]["max_abs_logit_diff"] < 0.5
    # float32 against itself agrees exactly; nothing to check on a CPU without native bf16
    same = check_precision(
        lambda dtype: predictor.logits(texts, dtype=torch.float32),
        multilabel=False,
        device=torch.device("cpu"),
        dtypes=[torch.bfloat16],
    )
    assert same["bfloat16"]["agreement"] == 1.0 and same["bfloat16"]["max_abs_logit_diff"] == 0


def test_what_a_worker_serves_in() -> None:
    cpu = torch.device("cpu")
    assert desired_dtype("auto", cpu) == torch.float32
    assert desired_dtype("float32", cpu) == torch.float32
    agrees = {"serving_precision": {"bfloat16": {"agreement": 0.995}}}
    disagrees = {"serving_precision": {"bfloat16": {"agreement": 0.9}}}
    assert member_dtype(torch.bfloat16, agrees, min_agreement=0.99) == torch.bfloat16
    assert member_dtype(torch.bfloat16, disagrees, min_agreement=0.99) == torch.float32
    assert member_dtype(torch.bfloat16, {}, min_agreement=0.99) == torch.float32  # unchecked
    assert member_dtype(torch.float16, agrees, min_agreement=0.99) == torch.float32
    assert member_dtype(torch.float32, disagrees, min_agreement=0.99) == torch.float32


def test_a_cpu_checks_bf16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.serving.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert checked_dtypes(cpu) == []
    assert desired_dtype("bfloat16", cpu) == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert checked_dtypes(cpu) == [torch.bfloat16]
    assert desired_dtype("bfloat16", cpu) == torch.bfloat16


def test_the_manifest_records_serving_precision(trained_full: Any, tmp_path: Path) -> None:
    from worker.artifacts import write_artifact
    from worker.serving.predictor import read_manifest

    record = {"bfloat16": {"agreement": 1.0, "max_abs_logit_diff": 0.01, "examples": 3}}
    dest = write_artifact(
        trained_full,
        tmp_path / "m",
        manifest={"base_model": {"id": "tiny-bert"}, "serving_precision": record},
    )
    assert read_manifest(dest)["serving_precision"] == record


def test_final_evaluation_checks_the_reduced_precision_this_device_runs(
    trained_full: Any, learnable_split: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.serving.precision as precision
    from app.contract.hyperparameters import Hyperparameters
    from worker.reporting import final_evaluation

    _, validation, _ = learnable_split(n_per_class=10, seed=8)
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    evaluation = final_evaluation(
        trained_full, validation=validation, test=None, hp=Hyperparameters(), device=cpu
    )
    assert evaluation.precision == {}  # nothing worth serving in on this CPU: no extra passes
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    evaluation = final_evaluation(
        trained_full, validation=validation, test=None, hp=Hyperparameters(), device=cpu
    )
    record = evaluation.precision["bfloat16"]
    assert record["examples"] == len(validation) and record["device"] == "cpu"
    assert 0.9 <= record["agreement"] <= 1.0
