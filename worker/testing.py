"""Tiny random BERT models and an easily learnable dataset, for tests in any folder.

Nothing is downloaded: the vocabulary, config and weights are generated and written with
safetensors, so ``AutoTokenizer``/``AutoModel.from_pretrained(dir)`` work offline.
"""

from __future__ import annotations

import json
import random
from itertools import product
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: the word that marks each class of :func:`learnable_examples`
CLASS_WORDS = {"A": "alpha", "B": "beta"}
_SYLLABLES = ["ka", "lo", "mi", "nu", "pe", "ri", "so", "tu", "va", "ze", "bo", "da"]
FILLER_WORDS = ["".join(pair) for pair in product(_SYLLABLES, repeat=2)]
MAX_POSITIONS = 64


def _vocabulary() -> list[str]:
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    words = [*CLASS_WORDS.values(), "gamma", "delta", *FILLER_WORDS]
    return [*SPECIAL_TOKENS, *letters, *(f"##{letter}" for letter in letters), *words]


def build_tiny_bert(dest: Path, *, sentence_transformers_pooling: str | None = None) -> Path:
    """Write a 2-layer, 32-wide random BERT + WordPiece tokenizer to ``dest``; return it.

    With ``sentence_transformers_pooling`` ("mean", "cls" or "max") the directory also gets a
    sentence-transformers ``1_Pooling/config.json`` saying so.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary()
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": MAX_POSITIONS,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(dest)
    tokenizer.save_pretrained(dest)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=2,
        # wider than BERT's 0.02, so that a random [CLS] state still varies with the input
        initializer_range=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        BertModel(config).save_pretrained(dest, safe_serialization=True)
    if sentence_transformers_pooling is not None:
        pooling_dir = dest / "1_Pooling"
        pooling_dir.mkdir(exist_ok=True)
        flags = {
            "mean": "pooling_mode_mean_tokens",
            "cls": "pooling_mode_cls_token",
            "max": "pooling_mode_max_tokens",
        }
        config_json = {"word_embedding_dimension": config.hidden_size}
        config_json.update(
            {flag: mode == sentence_transformers_pooling for mode, flag in flags.items()}
        )
        (pooling_dir / "config.json").write_text(json.dumps(config_json), encoding="utf-8")
    return dest


def learnable_examples(n_per_class: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts and their label names: class ``A`` texts say "alpha", class ``B`` say "beta".

    The marker word appears a few times among random filler words; order is shuffled.
    """
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for label, word in CLASS_WORDS.items():
        for _ in range(n_per_class):
            words = rng.choices(FILLER_WORDS, k=rng.randint(3, 8)) + [word] * 3
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return [text for text, _ in rows], [label for _, label in rows]


def learnable_pairs(n: int) -> tuple[list[str], list[str], list[int]]:
    """Text pairs and labels: 0 when the second text carries the first one's marker word
    (alpha or beta), 1 when it carries the other."""
    firsts, seconds, labels = [], [], []
    for index in range(n):
        first = ["alpha", "beta"][index % 2]
        same = (index // 2) % 2 == 0
        second = first if same else ["beta", "alpha"][index % 2]
        firsts.append(f"{first} {FILLER_WORDS[index % 50]}")
        seconds.append(f"{FILLER_WORDS[(index * 7) % 100]} {second}")
        labels.append(0 if same else 1)
    return firsts, seconds, labels


def learnable_label_sets(n: int) -> tuple[list[str], list[list[int]]]:
    """Texts and their label sets: 0 when "alpha" appears, 1 when "beta" does (or both)."""
    texts, labels = [], []
    for index in range(n):
        kind = index % 3
        words = [FILLER_WORDS[(index * 5 + j) % 100] for j in range(3)]
        if kind in (0, 2):
            words += ["alpha"] * 2
        if kind in (1, 2):
            words += ["beta"] * 2
        texts.append(" ".join(words))
        labels.append({0: [0], 1: [1], 2: [0, 1]}[kind])
    return texts, labels


def learnable_images(n_per_class: int, seed: int, size: int = 32) -> tuple[list[bytes], list[str]]:
    """PNG images and their label names: class ``A`` images are mostly red, ``B`` mostly blue,
    each with a random bright square and noise; order is shuffled."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows: list[tuple[bytes, str]] = []
    for label, channel in (("A", 0), ("B", 2)):
        for _ in range(n_per_class):
            pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(150, 256, size=(size, size), dtype=np.uint8)
            x, y = rng.integers(0, size // 2, size=2)
            pixels[y : y + size // 4, x : x + size // 4] = 255
            buffer = io.BytesIO()
            Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
            rows.append((buffer.getvalue(), label))
    order = rng.permutation(len(rows))
    return [rows[i][0] for i in order], [rows[i][1] for i in order]
