"""Fashion-MNIST (Zalando; 60,000 + 10,000 28 x 28 grayscale images, 10 classes) for the
image benchmark: the IDX reader, seeded stratified samples, and zips of PNG class folders.

The data come from Debian's ``dataset-fashion-mnist`` (``apt-get install -y
dataset-fashion-mnist``): gzip IDX files under ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

#: the labels 0..9 in Fashion-MNIST's order
LABEL_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

#: IDX type byte -> numpy dtype (big-endian where it matters)
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def folder_name(label: str) -> str:
    """A class folder's name: ``T-shirt/top`` -> ``T-shirt_top``, ``Ankle boot`` ->
    ``Ankle_boot``."""
    return label.replace("/", "_").replace(" ", "_")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as an array of its declared shape and type.

    Header: two zero bytes, a type byte, the number of dimensions, then each dimension as a
    big-endian uint32; the data follow, row-major.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file")
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) != header + count * dtype.itemsize:
        raise ValueError(f"{path}: {len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


@dataclass
class Sample:
    images: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray  # (n,) int
    indices: np.ndarray  # (n,) positions in the source file

    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(LABEL_NAMES))
        return {name: int(n) for name, n in zip(LABEL_NAMES, counts, strict=True)}


def load_split(split: str, data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of ``"train"`` (60,000) or ``"test"`` (10,000)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels.astype(np.int64)


def stratified_samples(
    images: np.ndarray, labels: np.ndarray, sizes: list[int], seed: int
) -> list[Sample]:
    """Disjoint stratified samples of the given sizes (in order), each seeded."""
    remaining = np.arange(labels.shape[0])
    samples = []
    for size in sizes:
        if size >= remaining.shape[0]:
            chosen, rest = remaining, remaining[:0]
        else:
            chosen, rest = train_test_split(
                remaining, train_size=size, stratify=labels[remaining], random_state=seed
            )
        chosen = np.sort(chosen)
        samples.append(Sample(images[chosen], labels[chosen], chosen))
        remaining = np.sort(rest)
    return samples


def class_folder_zip(sample: Sample, prefix: str) -> bytes:
    """A zip of ``<class folder>/<prefix>-<source index>.png`` (8-bit grayscale PNGs)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for image, label, index in zip(sample.images, sample.labels, sample.indices, strict=True):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            name = f"{folder_name(LABEL_NAMES[int(label)])}/{prefix}-{int(index):05d}.png"
            archive.writestr(name, png.getvalue())
    return buffer.getvalue()
