"""Deadlines, fairness between tenants, length buckets, and bounded tokenizing."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.worker.serving_harness import Harness
from worker.serving.encoding import CHARS_PER_TOKEN, encode_inputs
from worker.serving.scheduler import bucket


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_request_past_its_deadline_is_not_computed(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    clock = Clock()
    harness = Harness(served_artifacts, tiny_bert_dir, wall=clock)
    [backbone_key] = {harness.registry.get("probe-cls", "probe-cls").backbone.key}
    module = harness.registry.backbones[backbone_key].module
    forwards = harness.encoder_forwards(module)
    late = harness.submit("probe-cls", ["alpha kalo"], timeout_s=5)
    clock.now += 6  # its deadline passes while it waits
    on_time = harness.submit("probe-mean", ["beta mimi"], timeout_s=5)
    harness.drain()
    assert harness.expired == [late.id]
    assert late.id not in harness.replies  # the API answered 504 already
    assert harness.replies[on_time.id].ok
    assert len(forwards) == 1
    assert [row.pending.request.id for b in harness.batches for row in b.rows] == [on_time.id]
    assert harness.registry.members["probe-cls"].inflight == 0


def test_a_request_that_times_out_between_batches_is_not_computed_further(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    clock = Clock()
    harness = Harness(served_artifacts, tiny_bert_dir, max_examples=2, wall=clock)
    texts = [f"alpha kalo {i}" for i in range(10)]
    request = harness.submit("probe-cls", texts, timeout_s=5)
    assert harness.engine.step(timeout=0.01)
    clock.now += 6
    harness.drain()
    assert len(harness.batches) == 1 and len(harness.batches[0].rows) == 2
    assert harness.expired == [request.id] and request.id not in harness.replies


def test_a_small_tenant_is_served_next_while_another_floods(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir, max_examples=4)
    flood = [
        harness.submit("probe-cls", [f"alpha kalo {i} {j}" for j in range(8)], tenant="big")
        for i in range(10)
    ]
    small = harness.submit("probe-mean", ["beta mimi"], tenant="small")
    assert harness.engine.step(timeout=0.01)
    assert harness.engine.step(timeout=0.01)
    served_first = [row.pending.request.id for b in harness.batches for row in b.rows]
    assert small.id in served_first  # within two forwards of 4 rows, not after 80 rows
    assert small.id in harness.replies
    harness.drain()
    assert all(harness.replies[r.id].ok for r in flood)


def test_tenants_share_forwards_in_proportion(served_artifacts: Path, tiny_bert_dir: Path) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir, max_examples=4)
    for tenant in ("a", "b"):
        for i in range(6):
            harness.submit(
                "probe-cls", [f"alpha {tenant} {i} {j}" for j in range(4)], tenant=tenant
            )
    for _ in range(4):
        harness.engine.step(timeout=0.01)
    tenants = [row.pending.request.tenant for b in harness.batches for row in b.rows]
    assert tenants.count("a") == tenants.count("b") == 8


def test_length_buckets_pad_at_most_twice() -> None:
    assert [bucket(n) for n in (1, 8, 9, 16, 17, 100, 512)] == [8, 8, 16, 16, 32, 128, 512]


def test_short_and_long_inputs_are_not_padded_together(
    served_artifacts: Path, tiny_bert_dir: Path
) -> None:
    harness = Harness(served_artifacts, tiny_bert_dir)
    harness.submit("probe-cls", ["alpha", " ".join(["kalo"] * 50), "beta"])
    harness.drain()
    widths = sorted(max(row.length for row in b.rows) for b in harness.batches)
    assert len(harness.batches) == 2 and widths[0] <= 8 and widths[1] > 32


@pytest.mark.parametrize(
    "text",
    [
        " ".join(["alpha", "kalo", "beta"] * 3000),  # far longer than the model keeps
        "alpha" + " " * 5000 + "beta kalo " * 10,  # long whitespace: the prefix is too short
        "x" * 20000,  # one enormous word
        "short text",
    ],
)
def test_bounded_tokenizing_equals_the_whole_text(tiny_bert_dir: Path, text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for max_length in (16, 64):
        whole = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        [encoded] = encode_inputs(tokenizer, [text], pair=False, max_length=max_length)
        assert encoded.ids == whole
    pair = encode_inputs(tokenizer, [(text, "beta kalo")], pair=True, max_length=32)
    assert pair[0].ids == tokenizer(text, "beta kalo", truncation=True, max_length=32)["input_ids"]
    assert pair[0].type_ids is not None and len(pair[0].type_ids) == len(pair[0].ids)
    assert CHARS_PER_TOKEN * 64 < 20000  # the long cases above really are clipped first
