"""The inference worker process: ``python -m worker.serving`` (one per device).

Threads, and what each does:

- **intake**: pops requests fairly from the tenants' queues in Redis while the worker holds
  fewer than ``TUNESERVE_SERVING_MAX_PENDING_INPUTS`` inputs (one tenant at most half);
- **prepare** (a :class:`~worker.serving.fair_pool.FairPool`, round robin by tenant): takes a
  tenant's waiting requests in one batch, loads each model if needed, tokenizes all inputs
  for a model in one call, rejects a request past ``TUNESERVE_PREDICT_MAX_TOKENS`` (413), and
  hands each request's rows to the scheduler;
- **engine**: the device loop, one forward pass at a time (:mod:`worker.serving.engine`);
- **outbox**: sends answers to the API processes' reply lists, many per round trip.

Why a process of our own rather than Celery tasks: docs/serving.md.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from typing import Any

import torch

from app.base_models.registry import get_base_model
from app.config import Settings, get_settings
from app.inference.protocol import REPLY_PREFIX, InferReply, InferRequest
from app.storage import Storage
from worker.core.device import select_device
from worker.serving import metrics
from worker.serving.encoding import EncodedRows
from worker.serving.engine import Engine, Outcomes
from worker.serving.fair_pool import FairPool
from worker.serving.limits import Admission, batch_token_budget, forward_threads
from worker.serving.members import Member
from worker.serving.precision import desired_dtype
from worker.serving.predictor import ArtifactError
from worker.serving.redis_queue import InferenceQueue
from worker.serving.registry import ModelRegistry
from worker.serving.scheduler import Pending, Scheduler

log = logging.getLogger(__name__)


class InferenceServer:
    def __init__(self, settings: Settings | None = None, device: torch.device | None = None):
        self.settings = settings or get_settings()
        self.device = select_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(forward_threads(self.settings))
        storage = Storage.from_settings(self.settings)
        self.registry = ModelRegistry(
            artifact_dir=storage.path,
            resolve_base=self._resolve_base,
            device=self.device,
            desired_dtype=desired_dtype(self.settings.serving_dtype, self.device),
            min_agreement=self.settings.serving_min_agreement,
            max_items=self.settings.model_cache_size,
            max_bytes=self.settings.model_cache_bytes,
            max_image_pixels=self.settings.predict_max_image_pixels,
            image_max_side=self.settings.image_store_max_side,
        )
        self.queue = InferenceQueue(self.settings.celery_broker_url)
        self.admission = Admission(self.settings.serving_max_pending_inputs)
        self.outbox: queue.SimpleQueue[tuple[str, InferReply]] = queue.SimpleQueue()
        self.outcomes = Outcomes(send=self._post, release=self._release)
        self.scheduler = Scheduler(
            max_examples=self.settings.serving_max_batch_examples,
            max_tokens=batch_token_budget(self.settings, self.device),
            max_wait_s=self.settings.serving_max_wait_ms / 1000,
            on_expired=self.outcomes.expire,
        )
        self.engine = Engine(self.scheduler, self.outcomes)
        self.stopping = threading.Event()
        self.closing = threading.Event()  # no new requests from Redis
        self.pool: FairPool[InferRequest] | None = None
        self._threads: list[threading.Thread] = []

    def _resolve_base(self, base_id: str) -> Any:
        info = get_base_model(self.settings, base_id)
        return info.path if info is not None else None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.pool = FairPool(self._prepare, threads=2, max_items=64)
        for target, name in (
            (self._intake, "intake"),
            (lambda: self.engine.run_forever(self.stopping), "engine"),
            (self._send_replies, "outbox"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "inference worker on %s (%d threads): batches of %d inputs / %d tokens, "
            "wait %.1f ms, %s",
            self.device,
            torch.get_num_threads(),
            self.scheduler.max_examples,
            self.scheduler.max_tokens,
            self.settings.serving_max_wait_ms,
            self.registry.desired_dtype,
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking requests, answer those taken (within ``grace_s``), then stop."""
        self.closing.set()
        deadline = time.monotonic() + grace_s
        while self.admission.total > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stopping.set()
        self.scheduler.wake()
        if self.pool is not None:
            self.pool.stop()
        for thread in self._threads:
            thread.join(5)

    # -- intake and prepare ---------------------------------------------------------------
    def _intake(self) -> None:
        while not self.closing.is_set():
            try:
                if self.admission.full():
                    time.sleep(0.005)
                    continue
                raw = self.queue.pop(per_tenant=8, limit=64, skip=self.admission.full_tenants())
                if not raw:
                    self.queue.wait(0.5)
                    continue
                for item in raw:
                    self._admit(item)
            except Exception as exc:
                log.warning("inference intake: %s; retrying", exc)
                time.sleep(0.5)

    def _admit(self, raw: bytes) -> None:
        try:
            request = InferRequest.decode(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("malformed inference request dropped (%s)", type(exc).__name__)
            return
        if not request.reply_to.startswith(REPLY_PREFIX) or not isinstance(request.inputs, list):
            log.error("inference request %s dropped: bad reply key or inputs", request.id)
            return
        self.admission.take(request.tenant, len(request.inputs))
        assert self.pool is not None
        self.pool.submit(request.tenant, request)

    def _prepare(self, tenant: str, requests: list[InferRequest]) -> None:
        """Prepare a batch of one tenant's requests: one model lookup and one tokenizer call
        per model, then each request's rows to the scheduler."""
        now = time.time()
        by_model: dict[tuple[str, str], list[InferRequest]] = {}
        for request in requests:
            if now >= request.deadline:
                metrics.REQUESTS.labels("expired").inc()
                self.admission.give_back(tenant, len(request.inputs))
            else:
                by_model.setdefault((request.model_id, request.storage_path), []).append(request)
        self._prepare_groups(by_model)

    def _prepare_groups(self, by_model: dict[tuple[str, str], list[InferRequest]]) -> None:
        for (model_id, storage_path), group in by_model.items():
            try:
                member = self.registry.get(model_id, storage_path)
                encoded = member.encode_rows([item for request in group for item in request.inputs])
            except ArtifactError as exc:
                log.error("model %s cannot be served: %s", model_id, exc)
                for request in group:
                    message = f"The model cannot be served: {exc}"
                    self._refuse(request, 503, "model_unavailable", message)
                continue
            except (ValueError, TypeError) as exc:
                if len(group) > 1:  # find the request at fault: one at a time
                    for request in group:
                        by_model_one = {(model_id, storage_path): [request]}
                        self._prepare_groups(by_model_one)
                    continue
                self._refuse(group[0], 422, "invalid_input", f"Inputs rejected: {exc}")
                continue
            except Exception as exc:
                log.exception("preparing requests for %s failed", model_id)
                for request in group:
                    message = f"{type(exc).__name__}: {exc}"
                    self._refuse(request, 500, "prediction_failed", message)
                continue
            parts = encoded.split([len(request.inputs) for request in group])
            for request, part in zip(group, parts, strict=True):
                self._schedule(request, member, part)

    def _schedule(self, request: InferRequest, member: Member, encoded: EncodedRows) -> None:
        rows = encoded.rows
        tokens = sum(len(row) for row in rows)
        cap = self.settings.predict_max_tokens
        if tokens > cap:
            self._refuse(
                request,
                413,
                "too_many_tokens",
                f"The inputs are {tokens} tokens after truncation; at most {cap} per request. "
                "Send fewer or shorter inputs.",
                {"tokens": tokens, "max_tokens": cap},
            )
            return
        self.registry.hold(member, len(rows))
        self.scheduler.submit(Pending(request, member, rows, encoded.counts))

    def _refuse(
        self, request: InferRequest, status: int, code: str, message: str, details: Any = None
    ) -> None:
        metrics.REQUESTS.labels("rejected" if status < 500 else "failed").inc()
        self.admission.give_back(request.tenant, len(request.inputs))
        reply = InferReply(request.id, status=status, code=code, message=message, details=details)
        self._post(request.reply_to, reply)

    # -- answers --------------------------------------------------------------------------
    def _release(self, pending: Pending) -> None:
        self.registry.release(pending.member, len(pending.rows))
        self.admission.give_back(pending.request.tenant, len(pending.request.inputs))

    def _post(self, reply_to: str, reply: InferReply) -> None:
        self.outbox.put((reply_to, reply))

    def _send_replies(self) -> None:
        while not (self.stopping.is_set() and self.outbox.empty()):
            try:
                first = self.outbox.get(timeout=0.25)
            except queue.Empty:
                continue
            replies = [first]
            while len(replies) < 256:
                try:
                    replies.append(self.outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self.queue.send(replies)
            except Exception as exc:  # the API times out those requests (504)
                log.warning("could not send %d answers: %s", len(replies), exc)

    def snapshot(self) -> dict[str, float]:
        registry = self.registry
        return {
            "tuneserve_infer_models_loaded": len(registry.members),
            "tuneserve_infer_backbones_loaded": len(registry.backbones),
            "tuneserve_infer_model_bytes": registry.nbytes,
            "tuneserve_infer_pending_inputs": self.admission.total,
            "tuneserve_infer_model_cache_hits": registry.hits,
            "tuneserve_infer_model_cache_misses": registry.misses,
            "tuneserve_infer_model_cache_evictions": registry.evictions,
        }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    server = InferenceServer(settings)
    if settings.serving_metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(settings.serving_metrics_port, addr=settings.host)
            metrics.register_registry_collector(server.snapshot)
        except OSError as exc:
            log.warning("no metrics endpoint on port %d: %s", settings.serving_metrics_port, exc)
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the requests taken, then stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print("inference worker ready.", flush=True)
    done.wait()
    server.stop()
    return 0
