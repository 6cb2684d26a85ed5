"""What the base-model listing makes of a directory, from its JSON files alone (no torch)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from app.base_models.kinds import classify, processed_image_size
from app.base_models.registry import inspect_model_dir


def _write(directory: Path, name: str, payload: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    (directory / name).write_text(text, encoding="utf-8")


def _model_dir(tmp_path: Path, config: dict[str, Any], **files: Any) -> Path:
    directory = tmp_path / "model"
    _write(directory, "config.json", config)
    header = json.dumps({"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]}})
    blob = struct.pack("<Q", len(header)) + header.encode() + bytes(24)
    (directory / "model.safetensors").write_bytes(blob)
    for name, payload in files.items():
        _write(directory, name.replace("__", "."), payload)
    return directory


PROCESSOR = {"size": {"height": 48, "width": 48}, "do_center_crop": False}


def test_an_image_model_needs_its_image_processor(tmp_path: Path) -> None:
    bare = _model_dir(tmp_path, {"model_type": "resnet"})
    assert inspect_model_dir("r", bare, "test") is None
    _write(bare, "preprocessor_config.json", PROCESSOR)
    info = inspect_model_dir("r", bare, "test")
    assert info is not None
    assert (info.modality, info.family, info.image_size) == ("image", "convnet", 48)
    assert info.tasks == ["image-classification", "image-multilabel"]
    assert info.architecture == "resnet" and info.parameter_count == 6


def test_the_combined_processor_file_counts(tmp_path: Path) -> None:
    directory = _model_dir(
        tmp_path,
        {"model_type": "clip", "text_config": {"max_position_embeddings": 77}},
        processor_config__json={"image_processor": PROCESSOR, "processor_class": "CLIPProcessor"},
    )
    kind = classify(json.loads((directory / "config.json").read_text()), directory)
    assert kind is not None
    assert (kind.modality, kind.family, kind.image_size) == ("image-text", "dual-encoder", 48)
    assert kind.max_length == 77
    assert kind.zero_shot is False  # no tokenizer saved: the text tower cannot be used
    _write(directory, "tokenizer.json", {})
    kind = classify(json.loads((directory / "config.json").read_text()), directory)
    assert kind is not None and kind.zero_shot is True


def test_a_processor_file_without_an_image_processor_is_not_enough(tmp_path: Path) -> None:
    directory = _model_dir(
        tmp_path, {"model_type": "vit"}, processor_config__json={"processor_class": "X"}
    )
    assert inspect_model_dir("v", directory, "test") is None


@pytest.mark.parametrize(
    ("processor", "config", "side"),
    [
        (
            {"do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "size": 256},
            {},
            224,
        ),
        ({"do_center_crop": False, "crop_size": 224, "size": {"shortest_edge": 256}}, {}, 256),
        ({"size": {"height": 10, "width": 20}}, {"image_size": 32}, 32),
        ({}, {"vision_config": {"image_size": 64}}, 64),
        ({}, {}, None),
    ],
)
def test_processed_image_size(
    processor: dict[str, Any], config: dict[str, Any], side: int | None
) -> None:
    assert processed_image_size(processor, config) == side


def test_decoders_and_unknown_types(tmp_path: Path) -> None:
    gpt2 = _model_dir(tmp_path / "a", {"model_type": "gpt2", "n_positions": 128})
    info = inspect_model_dir("g", gpt2, "test")
    assert info is not None
    assert (info.modality, info.family, info.max_length) == ("text", "decoder", 128)
    assert info.task_families == ["text"] and "text-classification" in info.tasks
    assert info.image_size is None and info.zero_shot is False
    assert inspect_model_dir("t5", _model_dir(tmp_path / "b", {"model_type": "t5"}), "x") is None


def test_broken_json_is_not_listed(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path, {"model_type": "vit"}, preprocessor_config__json="{nope")
    assert inspect_model_dir("v", directory, "test") is None
    _write(directory, "config.json", "[1, 2]")
    assert inspect_model_dir("v", directory, "test") is None
