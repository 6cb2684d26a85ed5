"""The converted MobileNetV2 gives torchvision's logits on the same input.

torchvision cannot be imported beside this torch, so ``TorchvisionMobileNetV2`` below is a
faithful copy of ``torchvision.models.mobilenetv2.MobileNetV2`` (v0.2x): same module tree, so
the shipped state dict loads into it with ``strict=True``, and the same forward.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification

from worker.convert_mobilenet import (
    convert,
    convert_state_dict,
    hf_config,
    key_map,
    packaged_weights,
)


def _make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNReLU6(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with BatchNorm2d and ReLU6."""

    def __init__(self, inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        padding = (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(inp, oup, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        assert stride in (1, 2)
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden_dim, kernel=1))
        layers += [
            ConvBNReLU6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        input_channel, last_channel = 32, 1280
        inverted_residual_setting = [
            # t, c, n, s
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


@pytest.fixture(scope="module")
def weights() -> Path:
    try:
        return packaged_weights()
    except FileNotFoundError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (.ci/run installs it; in CI a missing package is a failure)")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def converted(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(weights, tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_1.0_224")


def test_key_map_covers_torchvision_one_to_one() -> None:
    reference = TorchvisionMobileNetV2()
    mapping = key_map()
    assert sorted(mapping.values()) == sorted(reference.state_dict())
    assert len(set(mapping.values())) == len(mapping)
    # the random reference converts too: the map and shapes agree without the real weights
    with torch.device("meta"):
        from transformers import MobileNetV2ForImageClassification

        skeleton = MobileNetV2ForImageClassification(hf_config())
    converted = convert_state_dict(reference.state_dict(), skeleton)
    assert set(converted) == set(skeleton.state_dict())


def test_converted_model_gives_torchvision_logits(weights: Path, converted: Path) -> None:
    reference = TorchvisionMobileNetV2()
    reference.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    reference.eval()
    model = AutoModelForImageClassification.from_pretrained(
        converted, use_safetensors=True, trust_remote_code=False
    ).eval()
    assert type(model).__name__ == "MobileNetV2ForImageClassification"

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, 3, 224, 224, generator=generator)
    with torch.no_grad():
        expected = reference(inputs)
        actual = model(pixel_values=inputs).logits
    assert actual.shape == (4, 1000)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(actual.argmax(-1), expected.argmax(-1))
    # a real signal, not two models agreeing on a constant
    assert expected.std() > 1.0


def test_directory_contents(converted: Path) -> None:
    assert sorted(path.name for path in converted.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "mobilenet_v2"
    assert config["architectures"] == ["MobileNetV2ForImageClassification"]
    assert config["tf_padding"] is False
    assert config["layer_norm_eps"] == 1e-5
    assert config["classifier_dropout_prob"] == 0.2
    assert len(config["id2label"]) == 1000

    processor = AutoImageProcessor.from_pretrained(converted)
    assert processor.crop_size == {"height": 224, "width": 224}
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]
    assert list(processor.image_std) == [0.229, 0.224, 0.225]
    assert not list(converted.parent.glob(".tmp-*"))


def test_existing_destination_is_left_alone_without_replace(weights: Path, converted: Path) -> None:
    before = (converted / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(OSError):
        convert(weights, converted)
    assert (converted / "model.safetensors").stat().st_mtime_ns == before
    assert not list(converted.parent.glob(".tmp-*"))


def test_command_line_writes_the_directory(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.convert_mobilenet import main

    dest = tmp_path / "models" / "mobilenet_v2_1.0_224"
    main([str(dest), "--weights", str(weights)])
    assert capsys.readouterr().out.strip() == str(dest)
    assert (dest / "model.safetensors").is_file() and (dest / "config.json").is_file()
    main([str(dest), "--replace"])  # the packaged weights, over the existing directory
    assert (dest / "preprocessor_config.json").is_file()
