"""``zero_shot``: CLIP without training; the artifact's logits are CLIP's own
``logits_per_image`` for the label prompts, and it serves like any head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import ZeroShotStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.core.images import decode
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.testing import learnable_images
from worker.training.callbacks import NullCallbacks

LABELS = ["red_thing", "blue-thing"]


def _train(base: Path, config: ZeroShotStrategy) -> tuple[object, Examples]:
    images, names = learnable_images(6, 3)
    labels = [["A", "B"].index(name) for name in names]
    validation = Examples([], labels, images=images)
    trained = train_model(
        base_model_dir=base,
        task="image-classification",
        label_names=LABELS,
        train=Examples([], labels[:2], images=images[:2]),
        validation=validation,
        strategy=config,
        hp=Hyperparameters(batch_size=4),
        callbacks=NullCallbacks(),
    )
    return trained, validation


def test_logits_are_clips_own(tiny_clip_dir: Path, tmp_path: Path) -> None:
    config = ZeroShotStrategy(templates=["a photo of a {}.", "a {} picture"])
    trained, validation = _train(tiny_clip_dir, config)
    dest = write_artifact(trained, tmp_path / "m", manifest={"base_model": {"id": "tiny-clip"}})
    served = load_predictor(dest, device=torch.device("cpu")).logits(list(validation.images or []))

    clip = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir)
    pixels = processor(images=[decode(i) for i in validation.images or []], return_tensors="pt")
    with torch.inference_mode():
        per_template = []
        for template in config.templates:
            prompts = [template.format(t) for t in ("red thing", "blue thing")]
            tokens = tokenizer(prompts, padding=True, return_tensors="pt")
            out = clip(**tokens, pixel_values=pixels["pixel_values"])
            per_template.append(out.text_embeds)
        text = torch.nn.functional.normalize(torch.stack(per_template).mean(0), dim=-1)
        image = out.image_embeds
        expected = clip.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(served, expected, atol=1e-4, rtol=1e-4)
    assert trained.metrics["val_accuracy"] >= 0.0 and trained.history[0]["epoch"] == 0.0


def test_templates_need_one_slot() -> None:
    with pytest.raises(ValueError, match="one '\\{\\}'"):
        ZeroShotStrategy(templates=["no slot here"])
    with pytest.raises(ValueError, match="one '\\{\\}'"):
        ZeroShotStrategy(templates=["{} and {}"])
