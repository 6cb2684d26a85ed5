"""The Python SDK (``tuneserve.Client`` / ``AsyncClient``) against a real uvicorn API on the
integration stack (PostgreSQL, Redis, a Celery training worker, an inference worker).

A dropped event stream is a real one: a TCP proxy in front of the API cuts the first stream
after its first event, and the SDK must resume with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import tuneserve
from tests.integration import conftest as integration_conftest
from tests.integration.conftest import ApiProcess, Stack, api_beside
from tuneserve.strategies import Hyperparameters, LinearProbe
from worker.testing import learnable_examples

pytestmark = pytest.mark.integration

#: a Redis database of its own (the other stack modules share 12): a run of another stack
#: module at the same time neither takes this module's tasks nor flushes its queues
SDK_REDIS_DB = 6

HP = {"epochs": 2, "batch_size": 8, "max_length": 32, "seed": 0, "validation_fraction": 0.25}


def rows(n_per_class: int, seed: int = 0) -> list[dict[str, str]]:
    texts, labels = learnable_examples(n_per_class, seed)
    return [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]


@pytest.fixture(scope="module")
def own_redis_db() -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setattr(integration_conftest, "INTEGRATION_REDIS_DB", SDK_REDIS_DB)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def stack(own_redis_db: None, stack: Stack) -> Stack:
    """The conftest's stack, on :data:`SDK_REDIS_DB`."""
    assert stack.env["TUNESERVE_BROKER_URL"].endswith(f"/{SDK_REDIS_DB}")
    return stack


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with api_beside(stack, tmp_path_factory.mktemp("sdk")) as process:
        yield process


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    return stack.key


@pytest.fixture
def client(api: ApiProcess, key: str) -> Iterator[tuneserve.Client]:
    with tuneserve.Client(api.url, key, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def job(api: ApiProcess, key: str) -> tuneserve.Job:
    """A linear_probe job on the learnable task, just submitted."""
    with tuneserve.Client(api.url, key) as client:
        dataset = client.datasets.upload(rows(40), name="learnable")
        return client.jobs.create(
            base_model="tiny-bert",
            dataset_id=dataset.id,
            strategy=LinearProbe(),
            hyperparameters=HP,
        )


class CuttingProxy:
    """A real TCP proxy to ``port`` that cuts its first connection right after the first SSE
    event of the answer, and keeps every request head it forwards."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.heads: list[str] = []
        self.cut = threading.Event()
        self.first = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            cut, self.first = self.first, False
            threading.Thread(target=self._serve, args=(conn, cut), daemon=True).start()

    def _serve(self, conn: socket.socket, cut: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.port))
        threading.Thread(target=self._requests, args=(conn, upstream), daemon=True).start()
        received = b""
        try:
            while data := upstream.recv(65536):
                if cut:  # forward up to the end of the first event, then drop the connection
                    received += data
                    head_end = received.find(b"\r\n\r\n")
                    event_end = received.find(b"\n\n", head_end + 4) if head_end >= 0 else -1
                    if event_end >= 0:
                        conn.sendall(data[: len(data) - (len(received) - event_end - 2)])
                        self.cut.set()
                        return
                conn.sendall(data)
        finally:
            for sock in (conn, upstream):  # shutdown: the FIN goes out at once
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _requests(self, conn: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                if data[:4] in (b"GET ", b"POST", b"DELE"):
                    self.heads.append(data.split(b"\r\n\r\n")[0].decode("latin-1").lower())
                upstream.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


def test_datasets_from_a_path_and_from_rows(client: tuneserve.Client, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows(20))
    from_path = client.datasets.upload(path, task="text-classification", name="from-path")
    assert (from_path.status, from_path.format, from_path.filename) == ("ready", "csv", "train.csv")
    assert (from_path.num_rows, from_path.labels, from_path.name) == (40, ["A", "B"], "from-path")

    renamed = [{"sentence": r["text"], "y": r["label"]} for r in rows(10, seed=1)]
    from_rows = client.datasets.upload(renamed, text_column="sentence", label_column="y")
    assert (from_rows.status, from_rows.format, from_rows.num_rows) == ("ready", "jsonl", 20)
    assert from_rows.column_mapping["text"] == "sentence"

    one_by_one = [d.id for d in client.datasets.list(page_size=1)]  # follows next_cursor
    assert len(one_by_one) == len(set(one_by_one)) >= 2
    assert one_by_one == [d.id for d in client.datasets.list(page_size=200)]
    assert {from_path.id, from_rows.id} <= set(one_by_one)

    assert client.datasets.get(from_rows.id).sha256 == from_rows.sha256
    client.datasets.delete(from_rows.id)
    with pytest.raises(tuneserve.NotFound) as caught:
        client.datasets.get(from_rows.id)
    assert (caught.value.status, caught.value.code) == (404, "not_found")


def test_dataset_from_a_dataframe(client: tuneserve.Client) -> None:
    import pandas  # a test dependency (pyproject's test extra): never skipped

    frame = pandas.DataFrame(rows(10, seed=2))
    as_parquet = client.datasets.upload(frame, name="frame")
    assert (as_parquet.format, as_parquet.num_rows, as_parquet.labels) == (
        "parquet",
        20,
        ["A", "B"],
    )
    as_csv = client.datasets.upload(frame, format="csv")
    assert (as_csv.format, as_csv.num_rows) == ("csv", 20)


def test_train_stream_resume_wait_predict(
    client: tuneserve.Client, api: ApiProcess, key: str, job: tuneserve.Job
) -> None:
    assert job.status == "queued" and job.strategy["name"] == "linear_probe"
    [chosen] = job.auto  # the one hyperparameter HP leaves out
    assert (chosen.field, chosen.value) == ("learning_rate", 0.01) and chosen.reason
    proxy = CuttingProxy(api.port)
    try:
        with tuneserve.Client(proxy.url, key) as through:
            streamed = list(through.jobs.stream_events(job.id))
    finally:
        proxy.close()
    assert proxy.cut.is_set(), "the first stream was not cut"
    streams = [h for h in proxy.heads if "accept: text/event-stream" in h]
    assert len(streams) >= 2 and "last-event-id" not in streams[0]
    assert f"last-event-id: {streamed[0].id}" in streams[1]  # resumed after the first event
    ids = [e.id for e in streamed]
    assert ids == [e.id for e in client.jobs.events(job.id, page_size=2)]  # none lost or twice
    assert streamed[0].kind == "queued" and streamed[-1].kind == "succeeded"

    # read a few, stop, resume from the last id seen: the rest, once each
    with closing(client.jobs.stream_events(job.id)) as stream:
        first = list(itertools.islice(stream, 2))
    rest = list(client.jobs.stream_events(job.id, last_event_id=first[-1].id))
    assert [e.id for e in first + rest] == ids

    done = client.jobs.wait(job.id, timeout=300, poll_interval=0.5)
    assert done.status == "succeeded" and done.done and done.model_id
    assert any(j.id == job.id for j in client.jobs.list(status="succeeded"))
    model = client.models.get(done.model_id)
    assert (model.labels, model.strategy, model.job_id) == (["A", "B"], "linear_probe", job.id)
    assert done.model_id in [m.id for m in client.models.list()]
    predictions = client.models.predict(
        done.model_id, ["alpha kalo alpha", "beta mi beta"], top_k=2
    )
    assert len(predictions) == 2
    for p in predictions:
        assert p.label in {"A", "B"} and 0.0 <= p.score <= 1.0
        assert sorted(s.label for s in p.top_k) == ["A", "B"]


def test_errors_keys_and_image_files(
    client: tuneserve.Client, api: ApiProcess, job: tuneserve.Job
) -> None:
    with pytest.raises(tuneserve.NotFound) as missing:
        client.models.predict("mdl_nope", ["text"])
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "mdl_nope" in missing.value.message

    dataset = client.datasets.get(job.dataset_id)
    with pytest.raises(tuneserve.InvalidInput) as invalid:
        client.jobs.create(base_model="tiny-bert", dataset_id=dataset.id, strategy="nope")
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_input")
    assert isinstance(invalid.value, tuneserve.BadRequest)
    assert any("strategy" in [str(p) for p in e["loc"]] for e in invalid.value.details)

    # image files travel as multipart `files`: the API reads both, in order
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    model_id = client.jobs.wait(job.id, timeout=300, poll_interval=0.5).model_id
    assert model_id is not None
    with pytest.raises(tuneserve.InvalidInput) as wrong:
        client.models.predict(model_id, images=[png.getvalue(), b"not an image"])
    assert wrong.value.code == "unsupported_image_type"
    assert wrong.value.details == {"field": "files[1]"}

    reader = client.keys.create(["read"], name="sdk-reader")
    assert reader.key and reader.scopes == ["read"]
    assert reader.id in [k.id for k in client.keys.list()]
    with tuneserve.Client(api.url, reader.key) as read_only:
        assert read_only.datasets.get(dataset.id).id == dataset.id
        with pytest.raises(tuneserve.Forbidden) as forbidden:
            read_only.datasets.delete(dataset.id)
        assert forbidden.value.details["required_scope"] == "train"
    rotated = client.keys.rotate(reader.id)
    client.keys.revoke(rotated.id)
    for revoked in (reader.key, rotated.key):
        with tuneserve.Client(api.url, revoked) as gone, pytest.raises(tuneserve.Unauthorized):
            gone.datasets.get(dataset.id)


def test_retries_honour_retry_after_of_a_real_429(
    stack: Stack, client: tuneserve.Client, tmp_path: Path
) -> None:
    limited = ApiProcess(
        {
            **stack.env,
            "TUNESERVE_RATE_LIMIT_PER_MINUTE": "60",  # one a second,
            "TUNESERVE_RATE_LIMIT_BURST": "1",  # none ahead
        },
        tmp_path / "limited.log",
    )
    statuses: list[int] = []
    hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    key = client.keys.create(["read"], name="sdk-limited").key
    try:
        with (
            httpx.Client(event_hooks=hooks) as http,
            tuneserve.Client(limited.url, key, max_retries=3, http_client=http) as patient,
        ):
            patient.base_models.list()
            started = time.monotonic()
            models = patient.base_models.list()  # refused once, then let through
            waited = time.monotonic() - started
        assert statuses == [200, 429, 200]
        assert waited >= 1.0  # Retry-After: 1
        assert "tiny-bert" in [m.id for m in models]

        with tuneserve.Client(limited.url, key, max_retries=0) as impatient:
            with contextlib.suppress(tuneserve.RateLimited):
                impatient.base_models.list()  # may pass or not: the next cannot
            with pytest.raises(tuneserve.RateLimited) as limited_error:
                impatient.base_models.list()
        assert limited_error.value.code == "rate_limited"
        assert limited_error.value.retry_after is not None and limited_error.value.retry_after >= 1
    finally:
        limited.stop()


def test_async_client_basic_flow(api: ApiProcess, key: str) -> None:
    async def flow() -> None:
        async with tuneserve.AsyncClient(api.url, key) as client:
            dataset = await client.datasets.upload(rows(40, seed=3), name="async")
            assert dataset.status == "ready"
            assert dataset.id in [d.id async for d in client.datasets.list(page_size=1)]
            job = await client.jobs.create(
                base_model="tiny-bert",
                dataset_id=dataset.id,
                strategy={"name": "linear_probe"},
                hyperparameters=Hyperparameters(**HP),
            )
            async with aclosing(client.jobs.stream_events(job.id)) as stream:
                kinds = [e.kind async for e in stream]
            assert kinds[0] == "queued" and kinds[-1] == "succeeded"
            done = await client.jobs.wait(job.id, timeout=60, poll_interval=0.5)
            assert done.status == "succeeded" and done.model_id
            events = [e.kind async for e in client.jobs.events(job.id)]
            assert events == kinds
            (prediction,) = await client.models.predict(done.model_id, ["alpha alpha alpha"])
            assert prediction.label in {"A", "B"}
            with pytest.raises(tuneserve.NotFound):
                await client.jobs.get("job_nope")

            sweep = await client.sweeps.create(
                base_model="tiny-bert",
                dataset_id=dataset.id,
                strategies=[LinearProbe()],
                hyperparameters=HP,
            )
            finished = await client.sweeps.wait(sweep.id, timeout=300, poll_interval=0.5)
            assert finished.status == "succeeded" and finished.model_id
            assert sweep.id in [s.id async for s in client.sweeps.list()]

    asyncio.run(flow())


def test_cancel_wait_timeout_and_idempotent_submit(client: tuneserve.Client) -> None:
    dataset = client.datasets.upload(rows(40, seed=4))
    long = {**HP, "epochs": 50, "early_stopping": {"enabled": False}}
    kwargs: dict[str, Any] = {
        "base_model": "tiny-bert",
        "dataset_id": dataset.id,
        "hyperparameters": long,
    }
    job = client.jobs.create(strategy="full", idempotency_key="sdk-once", **kwargs)
    again = client.jobs.create(strategy="full", idempotency_key="sdk-once", **kwargs)
    assert again.id == job.id  # what a retry with the same key gets
    with pytest.raises(tuneserve.Conflict) as reused:
        client.jobs.create(strategy="linear_probe", idempotency_key="sdk-once", **kwargs)
    assert reused.value.code == "idempotency_key_reused"
    with pytest.raises(tuneserve.WaitTimeout) as timed_out:
        client.jobs.wait(job.id, timeout=0)
    assert timed_out.value.last.id == job.id and not timed_out.value.last.done
    client.jobs.cancel(job.id)
    assert client.jobs.wait(job.id, timeout=120, poll_interval=0.5).status == "cancelled"


def test_export_downloads_the_archive(
    client: tuneserve.Client, job: tuneserve.Job, tmp_path: Path
) -> None:
    model_id = client.jobs.wait(job.id, timeout=300, poll_interval=0.5).model_id
    assert model_id is not None
    archive = client.models.export(model_id, tmp_path)  # a directory: the server's file name
    assert archive.parent == tmp_path and archive.name.endswith(".tar.gz")
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]  # no part file left
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"{model_id}/manifest.json" in names
    assert all(n == model_id or n.startswith(f"{model_id}/") for n in names)
