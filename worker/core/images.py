"""Images in, pixel batches out: decoding the stored copies, light augmentation, and the base's
own processor (resize, crop, normalise).

A dataset's canonical Parquet keeps each image as PNG bytes of an RGB copy (docs/datasets.md).
A loader yields ``(list of PIL images, labels)``; the model's inputs are made from them when a
batch is used (:func:`pixel_inputs`), so augmentation draws from torch's global RNG at
training time only: a resumed run that skips the batches it had done draws nothing for them,
and its checkpointed RNG gives the crops and flips an uninterrupted run would.
"""

from __future__ import annotations

import io
import math
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from worker.core.data import Examples, label_tensor

#: a batch: the decoded images and their label tensor
ImageBatch = tuple[list[Image.Image], torch.Tensor]
#: RandomResizedCrop's area and aspect ranges (a milder area floor than ImageNet's 0.08: the
#: datasets here are small and their objects often fill the frame)
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def decode(data: bytes) -> Image.Image:
    """A stored image as RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def random_resized_crop(image: Image.Image) -> Image.Image:
    """A random crop of 35-100% of the area at a 3:4-4:3 aspect, resized back to the image's
    size (the processor resizes to the model's input afterwards)."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * _uniform(*CROP_SCALE)
        aspect = math.exp(_uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, ()))
            top = int(torch.randint(0, height - h + 1, ()))
            return image.resize(
                (width, height), Image.Resampling.BILINEAR, (left, top, left + w, top + h)
            )
    return image


def augment(image: Image.Image, *, crop: bool, flip: bool) -> Image.Image:
    if crop:
        image = random_resized_crop(image)
    if flip and float(torch.rand(())) < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def pixel_inputs(
    processor: Any,
    images: list[Image.Image],
    *,
    training: bool = False,
    crop: bool = True,
    flip: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"pixel_values": ...}`` for ``images`` (augmented first when ``training``)."""
    if training and (crop or flip):
        images = [augment(image, crop=crop, flip=flip) for image in images]
    batch = processor(images=images, return_tensors="pt")
    return {"pixel_values": batch["pixel_values"]}


class StoredImages(Dataset[tuple[Image.Image, torch.Tensor]]):
    """A split's images, decoded when fetched, with their label tensors."""

    def __init__(self, examples: Examples, labels: torch.Tensor) -> None:
        if examples.images is None:
            raise ValueError("these examples hold no images")
        self.images = examples.images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, torch.Tensor]:
        return decode(self.images[index]), self.labels[index]


def image_loader(
    examples: Examples,
    *,
    batch_size: int,
    multilabel: bool,
    num_labels: int,
    generator: torch.Generator | None = None,
) -> DataLoader[Any]:
    """Batches of ``(images, labels)``; shuffled by ``generator`` when one is given."""
    labels = label_tensor(examples, multilabel=multilabel, num_labels=num_labels)

    def collate(
        items: list[tuple[Image.Image, torch.Tensor]],
    ) -> tuple[list[Image.Image], torch.Tensor]:
        return [image for image, _ in items], torch.stack([label for _, label in items])

    return DataLoader(
        StoredImages(examples, labels),
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        collate_fn=collate,
    )
