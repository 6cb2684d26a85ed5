"""long_text: windows of each mode, their pooling, training that needs the text's end, and
serving that reads a text exactly as training did."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import (
    ContrastiveStrategy,
    DannStrategy,
    DaptStrategy,
    FullStrategy,
    GradualUnfreezeStrategy,
    LinearProbeStrategy,
    LoraStrategy,
    PartialStrategy,
)
from tests.worker.serving_harness import Harness
from worker.artifacts import write_artifact
from worker.core.data import Examples, make_loader, tokenize_examples
from worker.core.long_text import WINDOWS, LongText, encode_windows, pool_windows
from worker.core.models import load_tokenizer
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.testing import FILLER_WORDS
from worker.training.callbacks import NullCallbacks

#: 150 distinct one-token words
WORDS = FILLER_WORDS[:150]
TEXT = " ".join(WORDS)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir: Path) -> Any:
    return load_tokenizer(tiny_bert_dir)


def _tokens(tokenizer: Any, window: list[int]) -> list[str]:
    """A window's words, special tokens dropped."""
    words = tokenizer.convert_ids_to_tokens(window)
    return [word for word in words if word not in ("[CLS]", "[SEP]")]


def test_each_mode_reads_the_window_it_promises(tokenizer: Any) -> None:
    def windows(mode: str, text: str = TEXT, **kw: Any) -> list[list[str]]:
        encoded = encode_windows(
            tokenizer,
            [text],
            max_length=16,
            long_text=LongText(mode, **kw),  # type: ignore[arg-type]
        )
        assert encoded.counts == [len(encoded.encodings["input_ids"])]
        return [_tokens(tokenizer, ids) for ids in encoded.encodings["input_ids"]]

    assert windows("truncate") == [WORDS[:14]]  # 16 less [CLS] and [SEP]
    assert windows("head_tail") == [WORDS[:3] + WORDS[-11:]]  # a quarter head, the rest tail
    assert windows("chunks", max_chunks=4) == [WORDS[i : i + 14] for i in (0, 14, 28, 42)]
    assert windows("chunks", max_chunks=16) == [WORDS[i : i + 14] for i in range(0, 150, 14)]
    short = " ".join(WORDS[:5])
    for mode in ("truncate", "head_tail", "chunks"):
        assert windows(mode, short) == [WORDS[:5]]
    assert windows("chunks", "") == [[]]  # an empty text is one (empty) window
    first = encode_windows(tokenizer, [TEXT], max_length=16).encodings["input_ids"][0]
    assert tokenizer.convert_ids_to_tokens(first)[0] == "[CLS]"


def test_pairs_are_truncated_whatever_the_mode(tokenizer: Any) -> None:
    modes = [LongText("truncate"), LongText("head_tail"), LongText("chunks")]
    encoded = [encode_windows(tokenizer, [TEXT], [TEXT], max_length=16, long_text=m) for m in modes]
    assert all(e.counts == [1] for e in encoded)
    assert len({tuple(e.encodings["input_ids"][0]) for e in encoded}) == 1


def test_a_huge_text_reads_only_its_ends(tokenizer: Any) -> None:
    """A text of 600,000 words costs what its two ends do, and reads as they do."""
    middle = " ".join(random.Random(0).choices(FILLER_WORDS, k=600_000))
    huge = f"{TEXT} {middle} {TEXT}"
    read = encode_windows(tokenizer, [huge], max_length=16, long_text=LongText("head_tail"))
    assert _tokens(tokenizer, read.encodings["input_ids"][0]) == WORDS[:3] + WORDS[-11:]


def test_pool_windows_means_each_texts_rows_and_passes_gradients() -> None:
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0], [2.0, 3.0]])
    values.requires_grad_(True)
    pooled = pool_windows(values, torch.tensor([2, 1, 2]))
    assert torch.equal(pooled.detach(), torch.tensor([[2.0, 1.0], [5.0, 5.0], [1.0, 2.0]]))
    pooled.sum().backward()
    assert values.grad is not None
    assert torch.allclose(values.grad[:, 0], torch.tensor([0.5, 0.5, 1.0, 0.5, 0.5]))


def test_a_chunked_batch_carries_its_window_counts(tokenizer: Any) -> None:
    texts = [TEXT, "alpha", " ".join(WORDS[:20])]
    data = tokenize_examples(
        Examples(texts, [0, 1, 0]),
        tokenizer,
        max_length=16,
        multilabel=False,
        num_labels=2,
        long_text=LongText("chunks", max_chunks=3),
    )
    inputs, labels = next(iter(make_loader(data, tokenizer, batch_size=3)))
    assert inputs[WINDOWS].tolist() == [3, 1, 2]
    assert inputs["input_ids"].shape == (6, 16)
    assert labels.tolist() == [0, 1, 0]


def _marked_at_the_end(n: int, seed: int) -> Examples:
    """Class 0 says "alpha", class 1 "beta", only after 80 filler words: past the tiny
    model's 64-token window."""
    rng = random.Random(seed)
    texts = [
        " ".join([*rng.choices(FILLER_WORDS, k=80), *[("alpha", "beta")[i % 2]] * 3])
        for i in range(n)
    ]
    return Examples(texts, [i % 2 for i in range(n)])


def test_only_reading_past_the_window_learns_a_label_at_the_end(
    tiny_bert_dir: Path, tiny_trainer: Any
) -> None:
    split = (_marked_at_the_end(64, 0), _marked_at_the_end(32, 1), ["A", "B"])
    accuracy = {
        mode: tiny_trainer(
            tiny_bert_dir,
            LinearProbeStrategy(pooling="mean"),
            split=split,
            long_text=mode,
            epochs=20,  # cheap: the features are computed once
        ).metrics["val_accuracy"]
        for mode in ("truncate", "head_tail", "chunks")
    }
    assert accuracy["truncate"] <= 0.65  # the marker is never seen: chance
    assert accuracy["head_tail"] >= accuracy["truncate"] + 0.25  # measured 0.53 -> 0.88
    assert accuracy["chunks"] >= accuracy["truncate"] + 0.3  # and 0.94


@pytest.mark.parametrize("strategy", [FullStrategy(), LoraStrategy(r=4), LinearProbeStrategy()])
def test_served_exactly_as_trained(
    strategy: Any, tiny_bert_dir: Path, tiny_trainer: Any, tmp_path: Path
) -> None:
    """The artifact records long_text; its predictor averages the logits of each window
    (computed here one window at a time); the batching server answers the same."""
    split = (_marked_at_the_end(16, 0), _marked_at_the_end(8, 1), ["A", "B"])
    trained = tiny_trainer(tiny_bert_dir, strategy, split=split, long_text="chunks", epochs=1)
    write_artifact(trained, tmp_path / "m", manifest={"base_model": {"id": "tiny-bert"}})
    predictor = load_predictor(tmp_path / "m", resolve_base=lambda _: tiny_bert_dir)
    assert predictor.long_text == LongText("chunks", max_chunks=4)
    texts = [TEXT, "alpha kalo", " ".join(WORDS[:70])]

    windows = encode_windows(
        predictor.tokenizer, texts, max_length=64, long_text=predictor.long_text
    )
    assert windows.counts == [3, 1, 2]
    one_window = load_predictor(tmp_path / "m", resolve_base=lambda _: tiny_bert_dir)
    one_window.long_text = LongText("truncate")
    tokenizer = predictor.tokenizer
    ids = windows.encodings["input_ids"]
    pieces = [tokenizer.decode(window, skip_special_tokens=True) for window in ids]
    by_window = one_window.logits(pieces)
    expected = pool_windows(by_window, torch.tensor(windows.counts))
    assert torch.allclose(predictor.logits(texts), expected, atol=1e-5)

    harness = Harness(tmp_path, tiny_bert_dir)
    request = harness.submit("m", texts, top_k=2)
    harness.drain()
    served = harness.replies[request.id].predictions or []
    for answer, reference in zip(served, predictor.predict(texts, top_k=2), strict=True):
        assert answer["label"] == reference["label"]
        assert answer["score"] == pytest.approx(reference["score"], abs=1e-4)


@pytest.mark.parametrize(
    ("strategy", "aux"),
    [
        (DannStrategy(target_dataset_id="t"), "target_dataset_id"),
        (ContrastiveStrategy(num_pairs=40, pair_epochs=1), None),
        (DaptStrategy(unlabeled_dataset_id="u", mlm_steps=4), "unlabeled_dataset_id"),
        (PartialStrategy(trainable_layers=1), None),
        (GradualUnfreezeStrategy(), None),
    ],
    ids=["dann", "contrastive", "dapt", "partial", "gradual_unfreeze"],
)
def test_every_text_strategy_trains_and_serves_in_chunks(
    strategy: Any, aux: str | None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """One short run each: the windows reach every forward (encoder, MLM, pairs, domain
    classifier) and the artifact reads texts in chunks as the run did."""
    train, validation = _marked_at_the_end(16, 0), _marked_at_the_end(8, 1)
    trained = train_model(
        base_model_dir=tiny_bert_dir,
        task="text-classification",
        label_names=["A", "B"],
        train=train,
        validation=validation,
        strategy=strategy,
        hp=Hyperparameters(epochs=1, batch_size=8, long_text="chunks", max_chunks=2),
        callbacks=NullCallbacks(),
        aux_texts={aux: [TEXT, TEXT[:200]]} if aux else {},
    )
    assert trained.long_text == LongText("chunks", max_chunks=2)
    write_artifact(trained, tmp_path / "m", manifest={"base_model": {"id": "tiny-bert"}})
    predictor = load_predictor(tmp_path / "m", resolve_base=lambda _: tiny_bert_dir)
    assert predictor.long_text == LongText("chunks", max_chunks=2)
    assert len(predictor.predict([TEXT, "alpha"])) == 2
