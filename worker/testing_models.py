"""Tiny random image and decoder models, for tests in any folder.

Each ``tiny_*_dir(dest)`` writes a Hugging Face directory to ``dest`` (created if missing) and
returns it: ``config.json``, ``model.safetensors`` and the model's processor (an image
processor's ``preprocessor_config.json`` resizing to 32 px, a tokenizer, or both for CLIP).
Nothing is downloaded; tokenizers are small byte-level BPEs written here. Weights are seeded, so
two builds are identical. ``AutoModel``/``AutoImageProcessor``/``AutoTokenizer``/
``AutoProcessor.from_pretrained(dir)`` load them offline without remote code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    ConvNextConfig,
    ConvNextForImageClassification,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    MobileNetV2Config,
    MobileNetV2ForImageClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil
from transformers.models.mobilenet_v2.image_processing_pil_mobilenet_v2 import (
    MobileNetV2ImageProcessorPil,
)
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

#: the side, in pixels, every tiny image model's processor resizes to
IMAGE_SIZE: Final = 32
#: classes of the tiny image classifiers' (random) heads
NUM_LABELS: Final = 3
SEED: Final = 1234
MAX_POSITIONS: Final = 64
IMAGENET_MEAN: Final = [0.485, 0.456, 0.406]
IMAGENET_STD: Final = [0.229, 0.224, 0.225]
CLIP_MEAN: Final = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD: Final = [0.26862954, 0.26130258, 0.27577711]
#: words the tiny BPE tokenizers know whole (the rest is spelled byte by byte)
WORDS: Final = (
    *("a", "photo", "of", "the", "cat", "dog", "bird", "car", "plane", "ship", "alpha", "beta"),
    *("gamma", "delta", "class", "label", "image", "picture", "small", "big", "red", "green"),
    "blue",
)


def _labels() -> tuple[dict[int, str], dict[str, int]]:
    id2label = {index: f"class_{index}" for index in range(NUM_LABELS)}
    return id2label, {name: index for index, name in id2label.items()}


def _save_seeded(dest: Path, build: Callable[[], Any]) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = build()
    model.save_pretrained(dest, safe_serialization=True)


def _prepare(dest: Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


# -- byte-level BPE vocabularies ------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the one both tokenizers use)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def _word_merges(word: str, suffix: str) -> list[tuple[str, str]]:
    """Left-to-right merges that assemble ``word`` (with ``suffix`` on its last symbol)."""
    symbols = list(word)
    if suffix:
        symbols[-1] += suffix
    merges = []
    current = symbols[0]
    for symbol in symbols[1:]:
        merges.append((current, symbol))
        current += symbol
    return merges


def _bpe(
    *, suffix: str, prefix_space: bool, specials: list[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)``: every byte (and, with ``suffix``, every byte ending a word) plus
    :data:`WORDS` whole; specials come last."""
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in alphabet + ([symbol + suffix for symbol in alphabet] if suffix else []):
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    space = _bytes_to_unicode()[ord(" ")]
    for word in WORDS:
        spelled = (space + word) if prefix_space else word
        for merge in _word_merges(spelled, suffix):
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault("".join(merge), len(vocab))
    for special in specials:
        vocab.setdefault(special, len(vocab))
    return vocab, merges


def _write_bpe(dest: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> tuple[str, str]:
    """Write ``vocab.json`` and ``merges.txt`` (as hub BPE checkpoints have them); their paths."""
    vocab_file, merges_file = dest / "vocab.json", dest / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{left} {right}" for left, right in merges)]
    merges_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(vocab_file), str(merges_file)


def _clip_tokenizer(dest: Path) -> CLIPTokenizer:
    vocab, merges = _bpe(
        suffix="</w>", prefix_space=False, specials=["<|startoftext|>", "<|endoftext|>"]
    )
    vocab_file, merges_file = _write_bpe(dest, vocab, merges)
    return CLIPTokenizer(vocab=vocab_file, merges=merges_file, model_max_length=MAX_POSITIONS)


def _gpt2_tokenizer(dest: Path) -> GPT2Tokenizer:
    vocab, merges = _bpe(suffix="", prefix_space=True, specials=["<|endoftext|>"])
    vocab_file, merges_file = _write_bpe(dest, vocab, merges)
    return GPT2Tokenizer(vocab=vocab_file, merges=merges_file, model_max_length=MAX_POSITIONS)


# -- image models ----------------------------------------------------------------------------


def _cnn_processor() -> ConvNextImageProcessorPil:
    """Resize the shorter side to IMAGE_SIZE (no crop), ImageNet normalisation."""
    return ConvNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_pct=1.0,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )


def tiny_resnet_dir(dest: Path) -> Path:
    """A 2-stage basic-block ResNet (8/16 channels) classifier with a 32 px processor."""
    dest = _prepare(dest)
    id2label, label2id = _labels()
    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        id2label=id2label,
        label2id=label2id,
    )
    _save_seeded(dest, lambda: ResNetForImageClassification(config))
    _cnn_processor().save_pretrained(dest)
    return dest


def tiny_vit_dir(dest: Path) -> Path:
    """A 2-layer, 32-wide ViT (32 px images, 8 px patches) classifier."""
    dest = _prepare(dest)
    id2label, label2id = _labels()
    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        id2label=id2label,
        label2id=label2id,
    )
    _save_seeded(dest, lambda: ViTForImageClassification(config))
    ViTImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(dest)
    return dest


def tiny_convnext_dir(dest: Path) -> Path:
    """A 2-stage ConvNeXt (8/16 channels, 4 px stem patches) classifier."""
    dest = _prepare(dest)
    id2label, label2id = _labels()
    config = ConvNextConfig(
        num_channels=3,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        image_size=IMAGE_SIZE,
        id2label=id2label,
        label2id=label2id,
    )
    _save_seeded(dest, lambda: ConvNextForImageClassification(config))
    _cnn_processor().save_pretrained(dest)
    return dest


def tiny_mobilenet_v2_dir(dest: Path) -> Path:
    """A MobileNetV2 at depth multiplier 0.1 (8-channel minimum) classifier, torchvision-style
    padding, with a 32 px processor."""
    dest = _prepare(dest)
    id2label, label2id = _labels()
    config = MobileNetV2Config(
        num_channels=3,
        image_size=IMAGE_SIZE,
        depth_multiplier=0.1,
        min_depth=8,
        tf_padding=False,
        layer_norm_eps=1e-5,
        classifier_dropout_prob=0.2,
        finegrained_output=False,
        id2label=id2label,
        label2id=label2id,
    )
    _save_seeded(dest, lambda: MobileNetV2ForImageClassification(config))
    MobileNetV2ImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ).save_pretrained(dest)
    return dest


def tiny_clip_dir(dest: Path) -> Path:
    """A CLIPModel with 2-layer, 32-wide text and vision towers (32 px images, 8 px patches),
    projection 16, and its ``CLIPProcessor`` (image processor + byte-level BPE tokenizer)."""
    dest = _prepare(dest)
    tokenizer = _clip_tokenizer(dest)
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_POSITIONS,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=16)
    _save_seeded(dest, lambda: CLIPModel(config))
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
    # also the classic standalone file, as hub CLIP checkpoints have it
    image_processor.save_pretrained(dest)
    return dest


# -- decoder ---------------------------------------------------------------------------------


def tiny_gpt2_dir(dest: Path) -> Path:
    """A 2-layer, 32-wide GPT-2 (2 heads, 64 positions) and a byte-level BPE tokenizer; no pad
    token is set (GPT-2 has none: users of the directory set it from EOS)."""
    dest = _prepare(dest)
    tokenizer = _gpt2_tokenizer(dest)
    tokenizer.save_pretrained(dest)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=MAX_POSITIONS,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    _save_seeded(dest, lambda: GPT2LMHeadModel(config))
    return dest
