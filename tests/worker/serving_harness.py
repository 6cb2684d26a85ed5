"""The inference worker's parts wired together in-process: a registry, a scheduler, an engine,
and an outbox that keeps the answers (the Redis ends are tested in tests/integration)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.inference.protocol import InferReply, InferRequest
from worker.serving.engine import Engine, Outcomes
from worker.serving.registry import ModelRegistry
from worker.serving.scheduler import Batch, Pending, Scheduler


class Harness:
    def __init__(
        self,
        artifacts: Path,
        base: Path | Callable[[str], Path],
        *,
        max_examples: int = 64,
        max_tokens: int = 4096,
        max_wait_s: float = 0.0,
        desired_dtype: torch.dtype = torch.float32,
        max_items: int = 1000,
        max_bytes: int = 1 << 40,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = ModelRegistry(
            artifact_dir=lambda relative: artifacts / relative,
            resolve_base=base if callable(base) else lambda _: base,
            device=torch.device("cpu"),
            desired_dtype=desired_dtype,
            min_agreement=0.99,
            max_items=max_items,
            max_bytes=max_bytes,
        )
        self.wall = wall
        self.replies: dict[str, InferReply] = {}
        self.expired: list[str] = []
        self._answered = threading.Condition()
        self.outcomes = Outcomes(send=self._keep, release=self._release)
        original_expire = self.outcomes.expire

        def expire(pending: Pending) -> None:
            self.expired.append(pending.request.id)
            original_expire(pending)

        self.scheduler = Scheduler(
            max_examples=max_examples,
            max_tokens=max_tokens,
            max_wait_s=max_wait_s,
            on_expired=expire,
            wall=wall,
        )
        self.engine = Engine(self.scheduler, self.outcomes)
        self.batches: list[Batch] = []
        run = self.engine.run

        def record(batch: Batch) -> None:
            self.batches.append(batch)
            run(batch)

        self.engine.run = record  # type: ignore[method-assign]

    def _keep(self, _reply_to: str, reply: InferReply) -> None:
        with self._answered:
            self.replies[reply.id] = reply
            self._answered.notify_all()

    def _release(self, pending: Pending) -> None:
        self.registry.release(pending.member, len(pending.rows))

    def submit(
        self,
        model_id: str,
        inputs: list[Any],
        *,
        tenant: str = "tenant-a",
        top_k: int = 2,
        timeout_s: float = 60.0,
    ) -> InferRequest:
        member = self.registry.get(model_id, model_id)
        request = InferRequest(
            model_id=model_id,
            storage_path=model_id,
            task=member.task,
            tenant=tenant,
            inputs=inputs,
            top_k=top_k,
            deadline=self.wall() + timeout_s,
            reply_to="tuneserve:infer:reply:test",
        )
        encoded = member.encode_rows(inputs)
        self.registry.hold(member, len(encoded.rows))
        self.scheduler.submit(Pending(request, member, encoded.rows, encoded.counts))
        return request

    def drain(self) -> None:
        """Run batches until nothing is waiting."""
        while self.engine.step(timeout=0.01):
            pass

    def wait_for(self, ids: list[str], timeout: float = 60.0) -> list[InferReply]:
        deadline = time.monotonic() + timeout
        with self._answered:
            while not all(i in self.replies for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{sum(i not in self.replies for i in ids)} unanswered")
                self._answered.wait(left)
        return [self.replies[i] for i in ids]

    def encoder_forwards(self, module: torch.nn.Module) -> list[int]:
        """A list that grows by one at each forward of ``module`` (keep it to count)."""
        calls: list[int] = []
        module.register_forward_hook(lambda *_: calls.append(1))
        return calls
