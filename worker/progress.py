"""Training callbacks that report to the database: throttled progress, a heartbeat thread.

The loop calls these every step; they touch no database on the hot path. A heartbeat thread
renews the lease about every third of its length and reads the cancel flag each second; the
step callback only checks the flags it set. Progress and metric points are written at most
every ``progress_write_interval_s``, epoch ends always.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.job_store import JobStore, LeaseLost
from worker.training.callbacks import TrainingCancelled, TrainingReleased, is_scalar_metric

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, store: JobStore, *, lease_seconds: int, poll_seconds: float = 1.0) -> None:
        super().__init__(name="tuneserve-heartbeat", daemon=True)
        self.store = store
        self.renew_every = max(1.0, lease_seconds / 3)
        self.poll_seconds = poll_seconds
        self.cancel_requested = threading.Event()
        self.release_requested = threading.Event()
        self.lease_lost = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        last_renewal = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            try:
                if now - last_renewal >= self.renew_every:
                    self.store.renew_lease()
                    last_renewal = now
                cancel, release = self.store.flags()
                if cancel:
                    self.cancel_requested.set()
                if release:
                    self.release_requested.set()
            except LeaseLost:
                self.lease_lost.set()
                return
            except Exception:  # database briefly unreachable: retry until the lease ends
                log.warning("heartbeat failed; retrying", exc_info=True)
            self._halt.wait(self.poll_seconds)

    def stop(self) -> None:
        self._halt.set()


class DbCallbacks:
    def __init__(
        self,
        store: JobStore,
        heartbeat: Heartbeat,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.heartbeat = heartbeat
        self.interval_s = interval_s
        self.clock = clock
        self.total_steps = 0
        self.epochs = 0
        self.started = clock()
        #: the step this attempt's clock counts from: a resumed fit starts past step 0
        self.first_step: int | None = None
        #: the current pre-training phase: its name, when and at which count it was first seen
        self._phase: tuple[str, float, int] | None = None
        self.last_write = 0.0
        self.latest: dict[str, Any] = {}
        self.progress: dict[str, Any] = {}
        self._points: list[tuple[str, float, int, dict[str, float]]] = []
        self._events: list[tuple[str, str, dict[str, Any] | None]] = []

    def _check(self) -> None:
        if self.heartbeat.lease_lost.is_set():
            raise LeaseLost(self.store.claim.job_id)
        if self.heartbeat.cancel_requested.is_set():
            raise TrainingCancelled("cancel requested")
        if self.heartbeat.release_requested.is_set():
            raise TrainingReleased("the worker is shutting down")

    def _flush(self) -> None:
        self.store.write_progress(
            progress=self.progress,
            metrics=dict(self.latest),
            points=self._points,
            events=self._events,
        )
        self._points, self._events = [], []
        self.last_write = self.clock()

    def on_train_begin(self, *, total_steps: int, epochs: int) -> None:
        self.total_steps, self.epochs = total_steps, epochs
        self.started = self.clock()
        self.first_step = None
        self._phase = None
        self.progress = {
            "phase": "training",
            "epoch": 0,
            "step": 0,
            "total_steps": total_steps,
            "percent": 0.0,
            "eta_seconds": None,
        }
        self._events.append(
            (
                "training_started",
                f"{epochs} epochs, {total_steps} steps.",
                {"total_steps": total_steps, "epochs": epochs},
            )
        )
        self._flush()
        self._check()

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        """A phase before training (linear_probe's feature pass, contrastive's pairs, dapt's
        MLM steps): ``percent`` and ``eta_seconds`` are the phase's, from ``done``/``total``.

        The phase's clock starts at its first report, so the rate counts only what was done
        since (the first report's own work took an unknown time: no ETA until the second)."""
        now = self.clock()
        if self._phase is None or self._phase[0] != phase or done < self._phase[2]:
            self._phase = (phase, now, done)
        _, began, first_done = self._phase
        since = done - first_done
        eta = (now - began) / since * max(0, total - done) if since > 0 else None
        self.progress = {
            "phase": phase,
            "epoch": 0,
            "step": 0,
            "total_steps": None,
            "phase_done": done,
            "phase_total": total,
            "percent": round(100.0 * done / total, 2) if total > 0 else 0.0,
            "eta_seconds": round(eta, 1) if eta is not None else None,
        }
        if now - self.last_write >= self.interval_s or done == total:
            self._flush()
        self._check()

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        # the rate counts only the steps of this attempt: after a resume the clock restarted at
        # on_train_begin but the step count did not (the first step seen is one step's time)
        if self.first_step is None:
            self.first_step = step - 1
        done = step - self.first_step
        elapsed = self.clock() - self.started
        steps_per_epoch = max(1, total_steps // max(1, self.epochs))
        eta = elapsed / done * (total_steps - step) if done > 0 else None
        self.progress = {
            "phase": "training",
            "epoch": round(step / steps_per_epoch, 3),
            "step": step,
            "total_steps": total_steps,
            "percent": round(100.0 * step / max(1, total_steps), 2),
            "eta_seconds": round(eta, 1) if eta is not None else None,
        }
        self.latest["train_loss"] = round(float(loss), 6)
        if self.clock() - self.last_write >= self.interval_s:
            self._points.append(("train", self.progress["epoch"], step, {"loss": float(loss)}))
            self._flush()
        self._check()

    def on_epoch_end(
        self, *, epoch: int, step: int, total_steps: int, metrics: dict[str, float]
    ) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        self.latest.update({k: v for k, v in clean.items() if is_scalar_metric(k)})
        self.latest["epoch"] = epoch
        self._points.append(("validation", float(epoch), step, clean))
        summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(clean.items()) if is_scalar_metric(k))
        self._events.append(
            (
                "epoch_end",
                f"Epoch {epoch}/{self.epochs}: {summary}",
                {"epoch": epoch, "step": step, "metrics": clean},
            )
        )
        self._flush()
        self._check()

    def on_evaluation(self, *, epoch: float, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        self.latest.update({k: v for k, v in clean.items() if is_scalar_metric(k)})
        self._points.append(("validation", float(epoch), step, clean))

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self._events.append((kind, message, data))
        self._flush()
        self._check()
