"""The inference batcher: concurrent requests share forward passes, models share a backbone,
mixed LoRA adapters in one batch, every answer equals the answer given alone."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel

from tests.worker.serving_harness import Harness
from worker.serving.backbone import tensor_bytes
from worker.serving.predictor import load_predictor
from worker.testing import learnable_examples

PROBES = ["probe-cls", "probe-mean", "probe-pooler"]


def _texts(n: int, seed: int) -> list[str]:
    return learnable_examples(n, seed)[0]


def _same(answer: list[dict[str, Any]], alone: list[dict[str, Any]]) -> None:
    assert [p["label"] for p in answer] == [p["label"] for p in alone]
    for got, want in zip(answer, alone, strict=True):
        assert [e["label"] for e in got["top_k"]] == [e["label"] for e in want["top_k"]]
        for a, b in zip(got["top_k"], want["top_k"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_concurrent_requests_share_forward_passes(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir, max_wait_s=0.02)
    for model_id in PROBES:
        harness.registry.get(model_id, model_id)
    [backbone] = harness.registry.backbones.values()
    forwards = harness.encoder_forwards(backbone.module)
    requests: list[tuple[str, list[str]]] = [
        (PROBES[i % 3], _texts(1 + i % 2, seed=100 + i)) for i in range(24)
    ]
    sent: list[Any] = [None] * len(requests)
    stop = threading.Event()
    engine = threading.Thread(target=harness.engine.run_forever, args=(stop,))
    engine.start()
    start = threading.Barrier(8)

    def client(k: int) -> None:
        start.wait()
        for i in range(k, len(requests), 8):
            model_id, texts = requests[i]
            sent[i] = harness.submit(model_id, texts)

    clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    try:
        answers = harness.wait_for([request.id for request in sent])
    finally:
        stop.set()
        engine.join()
    assert all(answer.ok for answer in answers)
    print(f"{len(requests)} requests, {len(forwards)} encoder forwards")
    assert 0 < len(forwards) < len(requests)
    assert any(len({row.pending.member.model_id for row in b.rows}) > 1 for b in harness.batches)

    # each answer equals that request sent alone, and the artifact's own predictor
    for (model_id, texts), answer in zip(requests, answers, strict=True):
        alone = Harness(served_artifacts, tiny_bert_dir)
        request = alone.submit(model_id, texts)
        alone.drain()
        assert all(
            row.pending is alone.batches[0].rows[0].pending for b in alone.batches for row in b.rows
        )
        _same(answer.predictions or [], alone.replies[request.id].predictions or [])
    reference = load_predictor(
        served_artifacts / "probe-mean", resolve_base=lambda _: tiny_bert_dir
    )
    model_id, texts = requests[1]
    assert model_id == "probe-mean"
    _same(answers[1].predictions or [], reference.predict(texts, top_k=2))


def test_twenty_probes_load_the_encoder_once(
    served_artifacts: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    for i in range(20):
        shutil.copytree(served_artifacts / PROBES[i % 3], tmp_path / f"probe-{i}")
    harness = Harness(tmp_path, tiny_bert_dir)
    members = [harness.registry.get(f"probe-{i}", f"probe-{i}") for i in range(20)]
    assert len(harness.registry.backbones) == 1
    encoder_bytes = tensor_bytes(AutoModel.from_pretrained(tiny_bert_dir))
    head_bytes = sum(tensor_bytes(m.head) for m in members)  # type: ignore[attr-defined]
    assert harness.registry.nbytes == encoder_bytes + head_bytes
    assert head_bytes < encoder_bytes / 10
    texts = ["alpha kalo sopa", "beta mimi"]  # one length bucket
    ids = [harness.submit(f"probe-{i}", texts).id for i in range(20)]
    harness.drain()
    assert len(harness.batches) == 1  # 40 rows of 20 models in one forward
    assert all(harness.replies[i].ok for i in ids)


def test_mixed_lora_adapters_in_one_batch_equal_each_alone(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    models = ["lora-r4", "probe-cls", "lora-r8", "full"]
    texts = ["alpha kalo alpha", "beta mimi beta", "kalo sopa", "alpha beta"]
    harness = Harness(served_artifacts, tiny_bert_dir)
    sent = {model_id: harness.submit(model_id, texts) for model_id in models}
    harness.drain()
    shared = [b for b in harness.batches if b.key[0].startswith("base:")]
    assert len(shared) == 1
    assert {row.pending.member.model_id for row in shared[0].rows} == {
        "lora-r4",
        "lora-r8",
        "probe-cls",
    }
    for model_id, request in sent.items():
        predictor = load_predictor(
            served_artifacts / model_id, resolve_base=lambda _: tiny_bert_dir
        )
        reply = harness.replies[request.id]
        assert reply.ok, reply
        _same(reply.predictions or [], predictor.predict(texts, top_k=2))
    # the frozen encoder is untouched by its adapters: probe rows see the plain base
    assert harness.registry.backbones[shared[0].key[0]].peft is not None


def test_unloading_an_adapter_keeps_the_others(served_artifacts: Path, tiny_bert_dir: Path) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir, max_items=2)
    texts = ["alpha kalo alpha", "beta mimi beta"]
    first = harness.submit("lora-r4", texts)
    harness.drain()
    harness.submit("lora-r8", texts)
    harness.submit("probe-cls", texts)  # a third model: the least recently used goes
    harness.drain()
    assert "lora-r4" not in harness.registry.members
    assert harness.registry.evictions == 1
    again = harness.submit("lora-r8", texts)
    harness.drain()
    predictor = load_predictor(served_artifacts / "lora-r8", resolve_base=lambda _: tiny_bert_dir)
    _same(harness.replies[again.id].predictions or [], predictor.predict(texts, top_k=2))
    assert harness.replies[first.id].ok


def test_a_loaded_model_with_rows_in_flight_is_not_evicted(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir, max_items=1)
    waiting = harness.submit("probe-cls", ["alpha"])
    harness.submit("probe-mean", ["beta"])  # over the limit, but probe-cls has a row waiting
    assert "probe-cls" in harness.registry.members
    harness.drain()
    assert harness.replies[waiting.id].ok


def test_bfloat16_serving_uses_the_manifest_record(
    served_artifacts: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    import json

    for name, agreement in (("agrees", 1.0), ("disagrees", 0.5)):
        shutil.copytree(served_artifacts / "probe-cls", tmp_path / name)
        manifest_path = tmp_path / name / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["serving_precision"] = {"bfloat16": {"agreement": agreement}}
        manifest_path.write_text(json.dumps(manifest))  # not a listed file: no hash to fix
    harness = Harness(tmp_path, tiny_bert_dir, desired_dtype=torch.bfloat16)
    assert harness.registry.get("agrees", "agrees").dtype == torch.bfloat16
    assert harness.registry.get("disagrees", "disagrees").dtype == torch.float32
    texts = _texts(3, seed=5)
    a, b = harness.submit("agrees", texts), harness.submit("disagrees", texts)
    harness.drain()
    assert {batch.dtype for batch in harness.batches} == {torch.bfloat16, torch.float32}
    low, full = harness.replies[a.id].predictions or [], harness.replies[b.id].predictions or []
    for x, y in zip(low, full, strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=0.05)
