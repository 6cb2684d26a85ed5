"""Logits to what a predict call returns: labels, scores, top-k, multi-label decisions."""

from __future__ import annotations

from typing import Any

import torch

from worker.evaluation.calibration import Calibration


def predictions_from_logits(
    logits: torch.Tensor,
    *,
    labels: list[str],
    multilabel: bool,
    calibration: Calibration,
    top_k: int = 1,
) -> list[dict[str, Any]]:
    """One dict per row: ``label``, ``score``, ``top_k`` (best first); multilabel adds
    ``labels`` (every label whose score reaches its threshold: tuned on validation, or 0.5).
    Scores are temperature-scaled when the job fitted a temperature."""
    if logits.shape[0] == 0:
        return []
    k = max(1, min(top_k, len(labels)))
    probabilities = calibration.probabilities(logits.float().numpy(), multilabel=multilabel)
    scores = torch.from_numpy(probabilities)
    thresholds = calibration.decision_thresholds(len(labels)).tolist()
    best = torch.topk(scores, k, dim=1)
    results: list[dict[str, Any]] = []
    for row, values, indices in zip(
        scores.tolist(), best.values.tolist(), best.indices.tolist(), strict=True
    ):
        ranked = [
            {"label": labels[index], "score": float(value)}
            for value, index in zip(values, indices, strict=True)
        ]
        result: dict[str, Any] = {**ranked[0], "top_k": ranked}
        if multilabel:
            result["labels"] = [labels[i] for i, score in enumerate(row) if score >= thresholds[i]]
        results.append(result)
    return results
