"""After training: evaluate what will be served, fit its calibration, write the job's report.

The model is evaluated through :func:`predictor_from_trained`, the same forward the artifact
serves, so the numbers describe the served model (its selected weights), not a training-time
approximation. On the validation set it fits the calibration (temperature, multi-label
thresholds) that serving applies; the test set, when given, is evaluated once, at the end,
with that calibration and never used for any choice.

With a feature cache, a ``head`` model over the unchanged base (linear_probe) is evaluated as
``head(pooled features)`` with the features from the cache (computed, and cached, only for
examples it misses): numerically the served forward (encoder, pooling, head, under the same
autocast), without running the encoder over examples it has already seen.

The report directory (``report.json`` and ``plots/*.png``) is built under a temporary name and
renamed into place, so a reader sees all of it or none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.atomic import atomic_dir
from app.contract.hyperparameters import Hyperparameters
from app.contract.tasks import MULTILABEL_TASKS
from app.jobs.reports import PLOTS_DIR, REPORT_FILE
from worker.core.data import Examples, label_tensor
from worker.core.device import autocast
from worker.core.pooling import PoolingMode
from worker.evaluation.calibration import Calibration, fit_calibration
from worker.evaluation.evaluate import evaluate_split
from worker.evaluation.plots import render_plots
from worker.features import FeatureCache, Featurizer
from worker.serving.precision import check_precision, checked_dtypes
from worker.serving.predictor import PredictInputs, predictor_from_trained
from worker.training.callbacks import is_scalar_metric
from worker.training.recipe import TrainedModel


@dataclass
class FinalEvaluation:
    calibration: Calibration
    #: :func:`evaluate_split` of the served model on each split (None: no such split)
    validation: dict[str, Any] | None
    test: dict[str, Any] | None
    #: agreement of each reduced precision with float32 on validation (manifest
    #: ``serving_precision``; empty where this device has no reduced precision worth it)
    precision: dict[str, Any] = field(default_factory=dict)

    def summary_metrics(self) -> dict[str, float]:
        """Scalars for the job's ``metrics``: ``test_*``, ECE and the temperature."""
        out: dict[str, float] = {}
        if self.validation is not None:
            out["val_ece"] = float(self.validation["calibration"]["ece"])
        if self.calibration.temperature is not None:
            out["temperature"] = float(self.calibration.temperature)
        if self.test is not None:
            for key in ("loss", "accuracy", "macro_f1", "micro_f1", "subset_accuracy"):
                if isinstance(self.test.get(key), (int, float)):
                    out[f"test_{key}"] = float(self.test[key])
            out["test_ece"] = float(self.test["calibration"]["ece"])
        return out


def predict_inputs(examples: Examples) -> PredictInputs:
    if examples.images is not None:
        return list(examples.images)
    if examples.text_pairs is not None:
        return [(a, b) for a, b in zip(examples.texts, examples.text_pairs, strict=True)]
    return list(examples.texts)


def served_logits(
    trained: TrainedModel,
    *,
    device: torch.device,
    batch_size: int,
    feature_cache: FeatureCache | None = None,
) -> Callable[[Examples], np.ndarray]:
    """``logits(examples)`` as the artifact will serve them. A ``head`` over the unchanged
    base with a feature cache: ``head(features)`` under the serving autocast, the encoder
    loaded only for examples the cache misses; otherwise the predictor's forward."""
    if feature_cache is not None and trained.kind == "head" and trained.backbone is None:
        head = trained.model
        pooling: PoolingMode = trained.pooling or "mean"  # type: ignore[assignment]
        featurizer = Featurizer.for_base(
            trained.base_model_dir,
            tokenizer=trained.tokenizer,
            pooling=pooling,
            max_length=trained.max_length,
            batch_size=batch_size,
            device=device,
            cache=feature_cache,
            long_text=trained.long_text,
        )

        def from_features(examples: Examples) -> np.ndarray:
            (features,) = featurizer.features(examples)
            head.eval()
            with torch.inference_mode(), autocast(device):
                logits: np.ndarray = head(features.to(device)).float().cpu().numpy()
            return logits

        return from_features
    predictor = predictor_from_trained(trained, device=device)
    return lambda examples: predictor.logits(predict_inputs(examples)).numpy()


def final_evaluation(
    trained: TrainedModel,
    *,
    validation: Examples,
    test: Examples | None,
    hp: Hyperparameters,
    device: torch.device,
    feature_cache: FeatureCache | None = None,
    check_precision: bool = True,
) -> FinalEvaluation:
    """Calibration, the validation and test reports, and (with ``check_precision``) how
    often the served forward in each reduced precision agrees with float32."""
    multilabel = trained.task in MULTILABEL_TASKS
    logits_of = served_logits(
        trained, device=device, batch_size=hp.batch_size, feature_cache=feature_cache
    )
    k = len(trained.label_names)

    def split_logits(examples: Examples) -> tuple[np.ndarray, np.ndarray]:
        logits = logits_of(examples)
        targets = label_tensor(examples, multilabel=multilabel, num_labels=k).numpy()
        return logits, targets

    if len(validation) == 0:
        return FinalEvaluation(Calibration(), None, None)
    val_logits, val_targets = split_logits(validation)
    calibration = fit_calibration(
        val_logits,
        val_targets,
        multilabel=multilabel,
        temperature_scaling=hp.temperature_scaling,
        tune_thresholds=hp.tune_thresholds and multilabel,
    )

    def report(logits: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        return evaluate_split(
            logits,
            targets,
            label_names=list(trained.label_names),
            multilabel=multilabel,
            calibration=calibration,
        )

    test_report = None
    if test is not None and len(test) > 0:
        test_report = report(*split_logits(test))
    precision = serving_precision(trained, validation, device=device) if check_precision else {}
    return FinalEvaluation(calibration, report(val_logits, val_targets), test_report, precision)


def serving_precision(
    trained: TrainedModel, validation: Examples, *, device: torch.device
) -> dict[str, Any]:
    """The served forward over validation in float32 and in each reduced precision this
    device runs well (:func:`worker.serving.precision.checked_dtypes`): how often they agree."""
    dtypes = checked_dtypes(device)
    if not dtypes or len(validation) == 0:
        return {}
    predictor = predictor_from_trained(trained, device=device)
    inputs = predict_inputs(validation)
    return check_precision(
        lambda dtype: predictor.logits(inputs, dtype=dtype),
        multilabel=trained.task in MULTILABEL_TASKS,
        device=device,
        dtypes=dtypes,
    )


def build_report(
    *,
    job_id: str,
    model_id: str,
    trained: TrainedModel,
    evaluation: FinalEvaluation,
    cost: dict[str, Any],
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "model_id": model_id,
        "task": trained.task,
        "strategy": trained.strategy,
        "labels": list(trained.label_names),
        "selection": trained.selection,
        "history": [
            {k: float(v) for k, v in point.items() if is_scalar_metric(k)}
            for point in trained.history
        ],
        "validation": evaluation.validation,
        "test": evaluation.test,
        "calibration": evaluation.calibration.to_json(),
        "cost": cost,
    }


def write_report(report: dict[str, Any], dest: Path) -> Path:
    """Write ``report.json`` and its plots as the directory ``dest``, atomically; an older
    directory there (a previous attempt of the same job) is replaced."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(dest, replace=True) as tmp:
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
        (tmp / PLOTS_DIR).mkdir()
        render_plots(report, tmp / PLOTS_DIR)
    return dest


def trainable_parameters(trained: TrainedModel) -> int:
    return sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
