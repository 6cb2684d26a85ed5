"""The ``auto`` strategy's bake-off on tiny models, where the right winner is known: a
candidate that cannot learn (a rate of 1e-7) never wins, the one that learns does, and the
report carries every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.contract.strategies import AutoStrategy
from tests.worker.conftest import make_split, train_tiny


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: None

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, message, data))


def plan(*candidates: tuple[str, float, int], **fields: Any) -> AutoStrategy:
    return AutoStrategy.model_validate(
        {
            "name": "auto",
            "plan": [{"name": n, "learning_rate": r, "epochs": e} for n, r, e in candidates],
            **fields,
        }
    )


def test_the_candidate_that_learns_wins_and_is_trained_in_full(tiny_bert_dir: Path) -> None:
    events = Recorder()
    trained = train_tiny(
        tiny_bert_dir,
        plan(("linear_probe", 1e-7, 3), ("full", 3e-3, 9)),
        split=make_split(40, seed=3),
        callbacks=events,
    )
    bakeoff = trained.selection["bakeoff"]
    assert bakeoff["winner"] == "full" and trained.strategy == "full" and trained.kind == "full"
    runs = {run["name"]: run for run in bakeoff["runs"]}
    assert runs["full"]["won"] and not runs["linear_probe"]["won"]
    assert runs["linear_probe"]["bakeoff_epochs"] == 1 and runs["full"]["bakeoff_epochs"] == 3
    assert runs["full"]["metrics"]["val_macro_f1"] > runs["linear_probe"]["metrics"]["val_macro_f1"]
    # the final run had the winner's 9 epochs (its history), not the bake-off's 3
    assert len(trained.history) == 9 and trained.metrics["val_accuracy"] >= 0.9
    assert bakeoff["served"] == "final"  # the full run scored no worse than the bake-off's
    kinds = [kind for kind, _, _ in events.events if kind == "bakeoff"]
    assert len(kinds) == 6  # start and result of each, the winner, the run served


def test_the_order_does_not_decide(tiny_bert_dir: Path) -> None:
    """The learner first and a candidate that cannot move (1e-7) second: the first wins."""
    trained = train_tiny(
        tiny_bert_dir,
        plan(("full", 3e-3, 9), ("linear_probe", 1e-7, 3)),
        split=make_split(40, seed=4),
    )
    runs = trained.selection["bakeoff"]["runs"]
    assert [(r["name"], r["won"]) for r in runs] == [("full", True), ("linear_probe", False)]
    assert runs[0]["metrics"]["val_macro_f1"] > runs[1]["metrics"]["val_macro_f1"]


def test_half_the_time_budget_spent_skips_the_rest(tiny_bert_dir: Path) -> None:
    trained = train_tiny(
        tiny_bert_dir,
        plan(("linear_probe", 3e-2, 3), ("full", 3e-3, 3), time_budget_minutes=1e-6),
        split=make_split(20, seed=3),
    )
    runs = trained.selection["bakeoff"]["runs"]
    assert runs[0]["name"] == "linear_probe" and runs[0]["won"]
    assert runs[1] == {
        "name": "full",
        "learning_rate": 3e-3,
        "epochs": 3,
        "skipped": "time budget",
        "won": False,
    }
