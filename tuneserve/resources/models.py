"""``client.models``: the fine-tuned models, and predictions with them."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from tuneserve._core import Call
from tuneserve._download import filename_of, saving, target_path
from tuneserve._payloads import ImageData, images_body
from tuneserve.errors import WaitTimeout, parse_retry_after
from tuneserve.models import ExportStatus, Model, Prediction
from tuneserve.resources._base import AsyncResource, SyncResource, path

_ONE = "/v1/models/{}"


def _predict_call(
    model_id: str,
    inputs: Sequence[str | Sequence[str]] | None,
    images: Sequence[ImageData] | None,
    top_k: int,
) -> Call:
    if (inputs is None) == (images is None):
        raise ValueError("give either inputs (texts) or images (paths or bytes)")
    url = path(_ONE + "/predict", model_id)
    if images is not None:
        return Call("POST", url, body=images_body(images, top_k=top_k), safe=True)
    assert inputs is not None
    if isinstance(inputs, str):
        raise ValueError("inputs must be a list of texts, not one text")
    texts: builtins.list[Any] = [i if isinstance(i, str) else list(i) for i in inputs]
    return Call("POST", url, json={"inputs": texts, "top_k": top_k}, safe=True)


def _predictions(body: Any) -> builtins.list[Prediction]:
    return [Prediction.model_validate(p) for p in body["predictions"]]


def _export_call(model_id: str, merge_lora: bool, as_full: bool) -> Call:
    params = {"merge_lora": str(merge_lora).lower(), "as_full": str(as_full).lower()}
    return Call("GET", path(_ONE + "/export", model_id), params=params, stream=True)


class _Export:
    """One export's progress: while a worker builds it (202), when to ask again."""

    def __init__(self, model_id: str, timeout: float | None, poll_interval: float) -> None:
        self.model_id, self.poll_interval = model_id, poll_interval
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def target(self, response: httpx.Response, dest: str | os.PathLike[str]) -> Path:
        name = filename_of(response.headers.get("content-disposition"), f"{self.model_id}.tar.gz")
        return target_path(dest, name)

    def wait_s(self, response: httpx.Response, body: Any) -> float:
        """Seconds until the next ask (``WaitTimeout`` past the deadline)."""
        status = ExportStatus.model_validate(body)
        wait = parse_retry_after(response.headers.get("retry-after")) or self.poll_interval
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            message = f"the export of {self.model_id} is still {status.status}"
            raise WaitTimeout(message, last=status)
        return wait


class Models(SyncResource):
    def list(self, *, page_size: int = 50) -> Iterator[Model]:
        return self._pages("/v1/models", Model, {"limit": page_size})

    def get(self, model_id: str) -> Model:
        return self._get(path(_ONE, model_id), Model)

    def delete(self, model_id: str) -> None:
        self._t.request(Call("DELETE", path(_ONE, model_id)))

    def predict(
        self,
        model_id: str,
        inputs: Sequence[str | Sequence[str]] | None = None,
        *,
        images: Sequence[ImageData] | None = None,
        top_k: int = 1,
    ) -> builtins.list[Prediction]:
        """Classify ``inputs`` (texts; ``[text, text_pair]`` for a pair model) or ``images``
        (paths or bytes, sent as multipart ``files``): one prediction per input, in order.
        ``GatewayTimeout`` when no worker answers in time."""
        return _predictions(self._t.request(_predict_call(model_id, inputs, images, top_k)))

    def export(
        self,
        model_id: str,
        dest: str | os.PathLike[str],
        *,
        merge_lora: bool = True,
        as_full: bool = False,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> Path:
        """Download the model as a ``.tar.gz`` that plain ``transformers`` loads, to ``dest``
        (a file, or a directory to put it in under the server's file name); its path. When a
        worker has to build it first (a LoRA merge, ``as_full``), asks again as
        ``Retry-After`` says until it is ready (``WaitTimeout`` after ``timeout`` s)."""
        export = _Export(model_id, timeout, poll_interval)
        while True:
            with self._t.stream(_export_call(model_id, merge_lora, as_full)) as response:
                if response.status_code != 202:
                    target = export.target(response, dest)
                    with saving(target) as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                    return target
                response.read()
                wait = export.wait_s(response, response.json())
            self._t.sleep(wait)


class AsyncModels(AsyncResource):
    def list(self, *, page_size: int = 50) -> AsyncIterator[Model]:
        return self._pages("/v1/models", Model, {"limit": page_size})

    async def get(self, model_id: str) -> Model:
        return await self._get(path(_ONE, model_id), Model)

    async def delete(self, model_id: str) -> None:
        await self._t.request(Call("DELETE", path(_ONE, model_id)))

    async def predict(
        self,
        model_id: str,
        inputs: Sequence[str | Sequence[str]] | None = None,
        *,
        images: Sequence[ImageData] | None = None,
        top_k: int = 1,
    ) -> builtins.list[Prediction]:
        """As :meth:`Models.predict`."""
        call = _predict_call(model_id, inputs, images, top_k)
        return _predictions(await self._t.request(call))

    async def export(
        self,
        model_id: str,
        dest: str | os.PathLike[str],
        *,
        merge_lora: bool = True,
        as_full: bool = False,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> Path:
        """As :meth:`Models.export` (the file is written with blocking writes)."""
        export = _Export(model_id, timeout, poll_interval)
        while True:
            async with self._t.stream(_export_call(model_id, merge_lora, as_full)) as response:
                if response.status_code != 202:
                    target = export.target(response, dest)
                    with saving(target) as out:
                        async for chunk in response.aiter_bytes():
                            out.write(chunk)
                    return target
                await response.aread()
                wait = export.wait_s(response, response.json())
            await self._t.sleep(wait)
