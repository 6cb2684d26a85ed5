"""``auto``: a short bake-off of the candidate strategies, then the winner trained in full.

Contract:

- The candidates and each one's learning rate and epochs come from ``config.plan``, filled in
  at submit by :mod:`app.jobs.auto_hyperparameters` (cheapest first; without a plan, one
  ``linear_probe`` at the job's rate and epochs).
- Bake-off: each candidate trains with its defaults, its rate and a third of its epochs (at
  least one) on the job's one split, with the job's early stopping and the feature cache (a
  probe's features are computed once for the bake-off and the final run), its checkpoints in
  a folder of its own (``bakeoff-<name>``, so a released job resumes where it was). Each start
  and result is an event (``bakeoff``). Once half of ``time_budget_minutes`` is spent, the
  remaining candidates are skipped (recorded as such); the first always runs.
- The winner is the candidate with the best validation macro-F1 of its served weights (as
  sweeps rank; ties: the lower validation loss, then the cheaper). It is trained again in
  full (its epochs; checkpoints under ``final``), unless its bake-off run already had them;
  the full run is served unless it scores worse than the bake-off run on the same split
  (``served``: ``final`` or ``bakeoff``; BBC News, 240 articles: ``full`` scored 0.976
  macro-F1 after 4 epochs, 0.962 after 10).
- The result is the winner's own artifact (its kind, its strategy name); its ``selection``
  carries ``bakeoff``: every candidate's rate, epochs, metrics, wall time and whether it won,
  so the job's report shows the bake-off.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from pydantic import TypeAdapter

from app.contract.strategies import AutoCandidate, AutoStrategy, StrategyConfig
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup, strategy_named

#: the share of a candidate's epochs its bake-off run gets
BAKEOFF_SHARE = 1 / 3
RANK_METRIC = "val_macro_f1"


def _run(setup: TrainingSetup, candidate: AutoCandidate, epochs: int, folder: str) -> TrainedModel:
    config = TypeAdapter(StrategyConfig).validate_python({"name": candidate.name})
    hp = setup.hp.model_copy(update={"learning_rate": candidate.learning_rate, "epochs": epochs})
    checkpoint = setup.checkpoint.child(folder) if setup.checkpoint is not None else None
    run = dataclasses.replace(setup, hp=hp, checkpoint=checkpoint)
    return strategy_named(candidate.name).train(run, config)


def _score(trained: TrainedModel) -> tuple[float, float]:
    metrics = trained.metrics
    return (metrics.get(RANK_METRIC, float("-inf")), -metrics.get("val_loss", float("inf")))


class AutoSelect(Strategy, name="auto", artifact_kind="full"):
    def train(self, setup: TrainingSetup, config: AutoStrategy) -> TrainedModel:
        plan = config.plan or [
            AutoCandidate(
                name="linear_probe",
                learning_rate=setup.hp.learning_rate or 1e-2,
                epochs=setup.hp.epochs,
            )
        ]
        started = time.monotonic()
        budget_s = None if config.time_budget_minutes is None else config.time_budget_minutes * 60
        events = setup.callbacks
        rows: list[dict[str, Any]] = []
        runs: list[tuple[AutoCandidate, int, TrainedModel]] = []
        for index, candidate in enumerate(plan):
            spent = time.monotonic() - started
            if index and budget_s is not None and spent >= budget_s / 2:
                rows.append({**candidate.model_dump(), "skipped": "time budget"})
                events.on_event(
                    "bakeoff",
                    f"Bake-off: {candidate.name} skipped, {spent:.0f} s of the "
                    f"{budget_s:.0f} s budget spent.",
                    {"candidate": candidate.name, "skipped": True},
                )
                continue
            epochs = max(1, math.ceil(candidate.epochs * BAKEOFF_SHARE))
            events.on_event(
                "bakeoff",
                f"Bake-off {index + 1}/{len(plan)}: {candidate.name} at "
                f"{candidate.learning_rate:g} for {epochs} epochs.",
                {"candidate": candidate.name, "epochs": epochs},
            )
            began = time.monotonic()
            trained = _run(setup, candidate, epochs, f"bakeoff-{candidate.name}")
            seconds = round(time.monotonic() - began, 1)
            runs.append((candidate, epochs, trained))
            value = trained.metrics.get(RANK_METRIC)
            rows.append(
                {
                    **candidate.model_dump(),
                    "bakeoff_epochs": epochs,
                    "seconds": seconds,
                    "metrics": {k: v for k, v in trained.metrics.items() if k.startswith("val_")},
                }
            )
            events.on_event(
                "bakeoff",
                f"Bake-off {index + 1}/{len(plan)}: {candidate.name} {RANK_METRIC}="
                f"{value if value is None else round(value, 4)} in {seconds} s.",
                {"candidate": candidate.name, RANK_METRIC: value, "seconds": seconds},
            )
        # best score first; among equals the cheapest (the plan's order)
        best = max(range(len(runs)), key=lambda i: (_score(runs[i][2]), -i))
        winner, bakeoff_epochs, trained = runs[best]
        for row in rows:
            row["won"] = row["name"] == winner.name
        events.on_event(
            "bakeoff",
            f"Bake-off won by {winner.name}; training it for {winner.epochs} epochs.",
            {"winner": winner.name, "epochs": winner.epochs},
        )
        served = "bakeoff"
        if winner.epochs > bakeoff_epochs:
            final = _run(setup, winner, winner.epochs, "final")
            # the longer run is served unless its selected weights score worse than the
            # bake-off's on the same validation split (then the bake-off's model is)
            if _score(final) >= _score(trained):
                trained, served = final, "final"
            events.on_event(
                "bakeoff",
                f"The final run of {winner.name} scored {RANK_METRIC}="
                f"{final.metrics.get(RANK_METRIC)}; serving the {served} run.",
                {"served": served},
            )
        selection = dict(trained.selection or {})
        selection["bakeoff"] = {
            "rank_metric": RANK_METRIC,
            "winner": winner.name,
            "served": served,
            "runs": rows,
        }
        return dataclasses.replace(trained, selection=selection)
