"""The device loop: take a batch, run its backbone once, hand each request its logits.

One :class:`Engine` per device runs on one thread, so forwards never overlap on a device
and nothing is loaded twice. A request is answered when its last row has been computed;
the answer (labels and scores, its model's calibration applied) goes to the
:class:`Outcomes` book, which sends it and releases what the request held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from app.contract.tasks import MULTILABEL_TASKS
from app.inference.protocol import InferReply
from worker.core.long_text import pool_windows
from worker.serving import metrics
from worker.serving.outputs import predictions_from_logits
from worker.serving.scheduler import Batch, Pending, Scheduler

log = logging.getLogger(__name__)


class Outcomes:
    """Finishes each request exactly once: answered, failed, or dropped past its deadline.

    ``send(reply_to, reply)`` delivers an answer; ``release(pending)`` gives back what the
    request held (its rows in the model cache, its share of the worker's memory)."""

    def __init__(
        self,
        *,
        send: Callable[[str, InferReply], None],
        release: Callable[[Pending], None],
    ) -> None:
        self.send = send
        self.release = release
        self._lock = threading.Lock()

    def _close(self, pending: Pending) -> bool:
        with self._lock:
            if pending.finished:
                return False
            pending.finished = True
        self.release(pending)
        return True

    def answer(self, pending: Pending, predictions: list[dict[str, Any]]) -> None:
        if self._close(pending):
            metrics.REQUESTS.labels("ok").inc()
            self.send(pending.request.reply_to, InferReply(pending.request.id, predictions))

    def fail(
        self, pending: Pending, *, status: int, code: str, message: str, details: Any = None
    ) -> None:
        if self._close(pending):
            metrics.REQUESTS.labels("rejected" if status < 500 else "failed").inc()
            reply = InferReply(
                pending.request.id, status=status, code=code, message=message, details=details
            )
            self.send(pending.request.reply_to, reply)

    def expire(self, pending: Pending) -> None:
        """Past its deadline: the API has answered 504; compute nothing more, send nothing."""
        if self._close(pending):
            metrics.REQUESTS.labels("expired").inc()


class Engine:
    def __init__(self, scheduler: Scheduler, outcomes: Outcomes) -> None:
        self.scheduler = scheduler
        self.outcomes = outcomes
        self.forwards = 0

    def step(self, timeout: float = 0.5) -> bool:
        """Run one batch; False when none was ready within ``timeout``."""
        batch = self.scheduler.next_batch(timeout)
        if batch is None:
            return False
        self.run(batch)
        return True

    def run(self, batch: Batch) -> None:
        rows = batch.rows
        members = [row.pending.member for row in rows]
        backbone = members[0].backbone
        started = time.monotonic()
        wall = time.time()
        for row in rows:
            if row.index == 0:
                metrics.QUEUE_WAIT.observe(max(0.0, wall - row.pending.request.sent_at))
        try:
            with backbone.lock:
                logits = backbone.run(
                    [row.pending.rows[row.index] for row in rows], members, batch.dtype
                )
        except Exception as exc:
            log.exception("forward pass on %s failed", backbone.key)
            for pending in {id(row.pending): row.pending for row in rows}.values():
                self.outcomes.fail(
                    pending,
                    status=500,
                    code="prediction_failed",
                    message=f"The prediction failed: {type(exc).__name__}: {exc}"[:500],
                )
            return
        self.forwards += 1
        metrics.FORWARD_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(len(rows))
        metrics.BATCH_TOKENS.observe(batch.padded_tokens)
        metrics.BATCH_MODELS.observe(len({member.model_id for member in members}))
        for row, row_logits in zip(rows, logits, strict=True):
            pending = row.pending
            if pending.finished:
                continue
            pending.logits[row.index] = row_logits
            pending.remaining -= 1
            if pending.remaining == 0:
                self._answer(pending)

    def _answer(self, pending: Pending) -> None:
        member = pending.member
        stacked = torch.stack([t for t in pending.logits if t is not None])
        if pending.counts is not None:  # several windows of one text: their mean
            stacked = pool_windows(stacked, torch.tensor(pending.counts))
        predictions = predictions_from_logits(
            stacked,
            labels=member.labels,
            multilabel=member.task in MULTILABEL_TASKS,
            calibration=member.calibration,
            top_k=pending.request.top_k,
        )
        self.outcomes.answer(pending, predictions)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step(timeout=0.25)
            except Exception:  # never let the device thread die
                log.exception("inference engine step failed")
                time.sleep(0.1)
