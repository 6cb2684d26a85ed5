"""What a pooled feature vector depends on, as hashes.

A cache *namespace* names one way of computing features: the encoder's weights (and its
architecture config), the tokenizer, the pooling mode, the truncation length, the device type
and the autocast dtype, and the torch/transformers versions that ran them. Inside a namespace
an example's *key* is the sha256 of its text (and text pair), so any split, subset or seed of a
dataset finds the features of the examples it shares with an earlier job.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from worker.core.device import autocast
from worker.core.long_text import LongText

KEY_BYTES = 32
FORMAT_VERSION = 1
#: files that define a tokenizer (``*.model`` covers sentencepiece vocabularies too)
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "preprocessor_config.json",  # an image processor: resizing, cropping, normalisation
    }
)
_CHUNK = 1 << 20
#: sha256 of files already hashed in this process, by (resolved path, size, mtime_ns)
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, memoised in-process by (path, size, mtime)."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    known = _FILE_HASHES.get(memo)
    if known is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        known = _FILE_HASHES[memo] = digest.hexdigest()
    return known


def _config_json(config: dict[str, Any]) -> str:
    """The architecture config without bookkeeping fields (paths, library version)."""
    kept = {
        key: value
        for key, value in config.items()
        if not key.startswith("_") and key not in {"transformers_version", "torch_dtype", "dtype"}
    }
    return json.dumps(kept, sort_keys=True, default=str)


def directory_weights_identity(directory: Path) -> str | None:
    """Identity of the encoder saved in ``directory``: its ``*.safetensors`` files and its
    ``config.json``. None when there are no safetensors weights (nothing is cached then)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256(b"tuneserve-weights-dir-v1\0")
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    config = Path(directory) / "config.json"
    if config.is_file():
        digest.update(_config_json(json.loads(config.read_text(encoding="utf-8"))).encode())
    return digest.hexdigest()


def module_weights_identity(module: nn.Module) -> str:
    """Identity of an in-memory encoder: the bytes of every state_dict tensor (and its config)."""
    digest = hashlib.sha256(b"tuneserve-weights-module-v1\0")
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(_config_json(config.to_dict()).encode())
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\0{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def is_tokenizer_file(name: str) -> bool:
    """True for a file that defines a tokenizer (its vocabulary, merges, configuration)."""
    return name in TOKENIZER_FILES or name.endswith(".model")


def _hash_tokenizer_files(directory: Path) -> str | None:
    files = sorted(
        path
        for path in Path(directory).iterdir()
        if path.is_file() and is_tokenizer_file(path.name)
    )
    if not files:
        return None
    digest = hashlib.sha256(b"tuneserve-tokenizer-v1\0")
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def tokenizer_identity(directory: Path, tokenizer: Any = None) -> str | None:
    """Identity of the tokenizer loaded from ``directory``: the hash of its tokenizer files;
    when it has none, of the files ``tokenizer.save_pretrained`` writes (None without one)."""
    found = _hash_tokenizer_files(directory)
    if found is not None or tokenizer is None:
        return found
    with tempfile.TemporaryDirectory(prefix="tuneserve-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        return _hash_tokenizer_files(Path(tmp))


def autocast_dtype(device: torch.device) -> str:
    """The dtype :func:`worker.core.device.autocast` computes in on ``device``."""
    dtype = getattr(autocast(device), "fast_dtype", None)
    return str(dtype if dtype is not None else torch.float32)


@dataclass(frozen=True)
class FeatureSpace:
    """Everything the features depend on besides the example itself."""

    encoder: str
    tokenizer: str
    pooling: str
    max_length: int
    long_text: LongText
    device: str
    dtype: str

    def parts(self) -> dict[str, Any]:
        """The namespace's key parts (recorded in every shard manifest)."""
        return {
            "format": FORMAT_VERSION,
            "encoder": self.encoder,
            "tokenizer": self.tokenizer,
            "pooling": self.pooling,
            "max_length": self.max_length,
            # only when not truncating: the namespaces of earlier truncated features stay valid
            **self.long_text.identity(),
            "device": self.device,
            "autocast_dtype": self.dtype,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    @property
    def namespace(self) -> str:
        return hashlib.sha256(json.dumps(self.parts(), sort_keys=True).encode()).hexdigest()


def image_keys(images: Sequence[bytes]) -> list[bytes]:
    """One 32-byte key per stored image: the sha256 of its bytes (domain-separated from the
    text keys)."""
    return [hashlib.sha256(b"tuneserve-image-v1\0" + image).digest() for image in images]


def keys_of(examples: Any) -> list[bytes]:
    """The keys of a split's examples: its images', or its texts' (and text pairs')."""
    if examples.images is not None:
        return image_keys(examples.images)
    return example_keys(examples.texts, examples.text_pairs)


def example_keys(texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[bytes]:
    """One 32-byte key per example: sha256 of the JSON array ``[text]`` or ``[text, pair]``
    (JSON quoting makes the separator unambiguous)."""

    def key(*fields: str) -> bytes:
        encoded = json.dumps(list(fields), ensure_ascii=False).encode("utf-8", "surrogatepass")
        return hashlib.sha256(encoded).digest()

    if pairs is None:
        return [key(text) for text in texts]
    return [key(text, pair) for text, pair in zip(texts, pairs, strict=True)]
