"""The inference worker's server over real Redis: answers, refusals (413, 503), requests past
their deadline, malformed messages, fair popping across tenants."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.inference.protocol import (
    TENANTS_KEY,
    WAKE_KEY,
    InferReply,
    InferRequest,
    new_reply_key,
    queue_key,
)
from tests.conftest import reset_caches

REDIS_DB = 9
MAX_TOKENS = 40


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_url}/{REDIS_DB}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def server(
    served_artifacts: Path,
    tiny_bert_dir: Path,
    redis_url: str,
    broker: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    from app.config import get_settings
    from worker.serving.server import InferenceServer

    models = tmp_path / "data" / "models"
    for name in ("probe-cls", "lora-r4"):
        shutil.copytree(served_artifacts / name, models / name)
    shutil.copytree(tiny_bert_dir, tmp_path / "bases" / "tiny-bert")
    for key, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "BROKER_URL": f"{redis_url}/{REDIS_DB}",
        "BASE_MODELS_DIR": str(tmp_path / "bases"),
        "INCLUDE_PACKAGED_MODELS": "false",
        "PREDICT_MAX_TOKENS": str(MAX_TOKENS),
        "SERVING_METRICS_PORT": "0",
    }.items():
        monkeypatch.setenv(f"TUNESERVE_{key}", value)
    reset_caches()
    running = InferenceServer(get_settings())
    running.start()
    yield running
    running.stop(grace_s=1)
    reset_caches()


def _send(broker: redis.Redis, raw: str, tenant: str) -> None:
    with broker.pipeline(transaction=False) as pipe:
        pipe.rpush(queue_key(tenant), raw)
        pipe.sadd(TENANTS_KEY, tenant)
        pipe.lpush(WAKE_KEY, 1)
        pipe.ltrim(WAKE_KEY, 0, 0)
        pipe.execute()


def _ask(
    broker: redis.Redis,
    model: str,
    inputs: list[str],
    *,
    tenant: str = "t1",
    deadline_s: float = 30,
    wait_s: float = 30,
) -> InferReply | None:
    request = InferRequest(
        model_id=model,
        storage_path=f"models/{model}",
        task="text-classification",
        tenant=tenant,
        inputs=inputs,
        top_k=1,
        deadline=time.time() + deadline_s,
        reply_to=new_reply_key(),
    )
    _send(broker, request.encode(), tenant)
    found = broker.blpop([request.reply_to], timeout=wait_s)
    return None if found is None else InferReply.decode(found[1])


def test_answers_over_redis(
    server: Any, broker: redis.Redis, served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    from worker.serving.predictor import load_predictor

    texts = ["alpha kalo alpha", "beta mimi beta"]
    for model in ("probe-cls", "lora-r4"):
        reply = _ask(broker, model, texts)
        assert reply is not None and reply.ok, reply
        alone = load_predictor(served_artifacts / model, resolve_base=lambda _: tiny_bert_dir)
        expected = alone.predict(texts)
        assert [p["label"] for p in reply.predictions or []] == [p["label"] for p in expected]
        for got, want in zip(reply.predictions or [], expected, strict=True):
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert len(server.registry.backbones) == 1
    assert server.admission.total == 0


def test_too_many_tokens_is_refused_with_413(server: Any, broker: redis.Redis) -> None:
    reply = _ask(broker, "probe-cls", ["alpha kalo beta mimi sopa"] * 10)
    assert reply is not None and reply.status == 413 and reply.code == "too_many_tokens"
    assert reply.details["max_tokens"] == MAX_TOKENS and reply.details["tokens"] > MAX_TOKENS


def test_a_missing_or_altered_artifact_is_503(
    server: Any, broker: redis.Redis, tmp_path: Path
) -> None:
    reply = _ask(broker, "mdl_gone", ["alpha"])
    assert reply is not None and reply.status == 503 and reply.code == "model_unavailable"
    shutil.copytree(tmp_path / "data/models/probe-cls", tmp_path / "data/models/altered")
    manifest = tmp_path / "data/models/altered/manifest.json"
    data = json.loads(manifest.read_text())
    head = tmp_path / "data/models/altered" / data["head"]["file"]
    head.write_bytes(head.read_bytes()[:-4] + b"\0\0\0\0")
    reply = _ask(broker, "altered", ["alpha"])
    assert reply is not None and reply.status == 503 and "sha256" in (reply.message or "")


def test_a_request_past_its_deadline_gets_no_work(server: Any, broker: redis.Redis) -> None:
    assert _ask(broker, "probe-cls", ["alpha"], deadline_s=-1, wait_s=1) is None
    assert "probe-cls" not in server.registry.members  # not even its model was loaded
    assert server.admission.total == 0
    assert _ask(broker, "probe-cls", ["alpha"]) is not None  # and the worker goes on


def test_malformed_messages_are_dropped(server: Any, broker: redis.Redis) -> None:
    _send(broker, "{not json", "t1")
    _send(broker, json.dumps({"id": "x"}), "t1")
    bad_reply_key = InferRequest(
        model_id="probe-cls",
        storage_path="models/probe-cls",
        task="text-classification",
        tenant="t1",
        inputs=["alpha"],
        top_k=1,
        deadline=time.time() + 30,
        reply_to="some:other:key",
    )
    _send(broker, bad_reply_key.encode(), "t1")
    reply = _ask(broker, "probe-cls", ["alpha"])
    assert reply is not None and reply.ok
    assert not broker.exists("some:other:key")


def test_requests_are_popped_round_robin_across_tenants(broker: redis.Redis) -> None:
    from worker.serving.redis_queue import InferenceQueue

    for i in range(10):
        _send(broker, f"a{i}", "tenant-a")
    _send(broker, "b0", "tenant-b")
    queue = InferenceQueue(_url(broker))
    popped = queue.pop(per_tenant=2, limit=3)
    assert b"b0" in popped and len(popped) == 3
    assert queue.pop(per_tenant=2, limit=100, skip=["tenant-a"]) == []
    rest = queue.pop(per_tenant=100, limit=100)
    assert len(rest) == 8 and not broker.sismember(TENANTS_KEY, "tenant-a")


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"
