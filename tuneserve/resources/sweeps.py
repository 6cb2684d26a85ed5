"""``client.sweeps``: strategy bake-offs on one split, ranked by one metric."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

from tuneserve._core import Call
from tuneserve.errors import WaitTimeout
from tuneserve.models import Sweep
from tuneserve.resources._base import AsyncResource, SyncResource, path
from tuneserve.resources._create import create_call, sweep_body
from tuneserve.strategies import HyperparametersLike, StrategyLike

_ONE = "/v1/sweeps/{}"
SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]


def _create(
    base_model: str,
    dataset_id: str,
    strategies: Sequence[StrategyLike],
    learning_rates: Sequence[float] | None,
    hyperparameters: HyperparametersLike | None,
    metric: str | None,
    validation_dataset_id: str | None,
    test_dataset_id: str | None,
    idempotency_key: str | None,
    extra: Mapping[str, Any] | None,
) -> Call:
    body = sweep_body(
        base_model=base_model,
        dataset_id=dataset_id,
        strategies=strategies,
        learning_rates=learning_rates,
        metric=metric,
        validation_dataset_id=validation_dataset_id,
        test_dataset_id=test_dataset_id,
    )
    return create_call(
        "/v1/sweeps",
        body,
        hyperparameters=hyperparameters,
        idempotency_key=idempotency_key,
        extra=extra,
    )


def _cancel(sweep_id: str) -> Call:
    # not retried after a broken connection: a second cancel of a cancelled sweep is a 409
    return Call("POST", path(_ONE + "/cancel", sweep_id))


class Sweeps(SyncResource):
    def create(
        self,
        *,
        base_model: str,
        dataset_id: str,
        strategies: Sequence[StrategyLike],
        learning_rates: Sequence[float] | None = None,
        hyperparameters: HyperparametersLike | None = None,
        metric: str | None = None,
        validation_dataset_id: str | None = None,
        test_dataset_id: str | None = None,
        idempotency_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Sweep:
        """Start a sweep: one job per strategy (x learning rate), ranked by ``metric``; the
        winner's model is promoted to the sweep's ``model_id``. Sent with an
        ``Idempotency-Key`` (a fresh one unless given)."""
        call = _create(
            base_model,
            dataset_id,
            strategies,
            learning_rates,
            hyperparameters,
            metric,
            validation_dataset_id,
            test_dataset_id,
            idempotency_key,
            extra,
        )
        return Sweep.model_validate(self._t.request(call))

    def get(self, sweep_id: str) -> Sweep:
        return self._get(path(_ONE, sweep_id), Sweep)

    def list(self, *, status: SweepStatus | None = None, page_size: int = 20) -> Iterator[Sweep]:
        return self._pages("/v1/sweeps", Sweep, {"status": status, "limit": page_size})

    def cancel(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(self._t.request(_cancel(sweep_id)))

    def wait(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> Sweep:
        """Poll until the sweep is over; the final sweep. ``WaitTimeout`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get(sweep_id)
            if sweep.done:
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"sweep {sweep_id} still running after {timeout}s", last=sweep)
            left = poll_interval if deadline is None else deadline - time.monotonic()
            self._t.sleep(max(0.0, min(poll_interval, left)))


class AsyncSweeps(AsyncResource):
    async def create(
        self,
        *,
        base_model: str,
        dataset_id: str,
        strategies: Sequence[StrategyLike],
        learning_rates: Sequence[float] | None = None,
        hyperparameters: HyperparametersLike | None = None,
        metric: str | None = None,
        validation_dataset_id: str | None = None,
        test_dataset_id: str | None = None,
        idempotency_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Sweep:
        """As :meth:`Sweeps.create`."""
        call = _create(
            base_model,
            dataset_id,
            strategies,
            learning_rates,
            hyperparameters,
            metric,
            validation_dataset_id,
            test_dataset_id,
            idempotency_key,
            extra,
        )
        return Sweep.model_validate(await self._t.request(call))

    async def get(self, sweep_id: str) -> Sweep:
        return await self._get(path(_ONE, sweep_id), Sweep)

    def list(
        self, *, status: SweepStatus | None = None, page_size: int = 20
    ) -> AsyncIterator[Sweep]:
        return self._pages("/v1/sweeps", Sweep, {"status": status, "limit": page_size})

    async def cancel(self, sweep_id: str) -> Sweep:
        return Sweep.model_validate(await self._t.request(_cancel(sweep_id)))

    async def wait(
        self, sweep_id: str, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> Sweep:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = await self.get(sweep_id)
            if sweep.done:
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"sweep {sweep_id} still running after {timeout}s", last=sweep)
            left = poll_interval if deadline is None else deadline - time.monotonic()
            await self._t.sleep(max(0.0, min(poll_interval, left)))
