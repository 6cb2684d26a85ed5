"""Image models through the inference worker's batcher: base64 image files in, the predictor's
answers out; probes on one base share its encoder and one forward; a bad image refuses only
its own request."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import (
    FullStrategy,
    LinearProbeStrategy,
    LoraStrategy,
    ZeroShotStrategy,
)
from tests.worker.serving_harness import Harness
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.testing import learnable_images
from worker.training.callbacks import NullCallbacks

LABELS = ["A", "B"]
#: model name -> (base architecture, strategy)
MODELS: dict[str, tuple[str, Any]] = {
    "resnet-probe": ("resnet", LinearProbeStrategy()),
    "resnet-probe-2": ("resnet", LinearProbeStrategy(pooling="pooler")),
    "vit-lora": ("vit", LoraStrategy(r=4)),
    "mobilenet-full": ("mobilenet_v2", FullStrategy()),
    "clip-probe": ("clip", LinearProbeStrategy()),
    "clip-zero-shot": ("clip", ZeroShotStrategy()),
}


def _examples(n_per_class: int, seed: int) -> Examples:
    images, names = learnable_images(n_per_class, seed)
    return Examples([], [LABELS.index(name) for name in names], images=images)


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("image-models")
    bases: dict[str, Path] = {}
    for name, (arch, strategy) in MODELS.items():
        base = bases.setdefault(arch, request.getfixturevalue(f"tiny_{arch}_dir"))
        seed = 1 if name.endswith("-2") else 0
        trained = train_model(
            base_model_dir=base,
            task="image-classification",
            label_names=LABELS,
            train=_examples(12, seed),
            validation=_examples(4, seed + 10),
            strategy=strategy,
            hp=Hyperparameters(epochs=2, batch_size=8, seed=seed, learning_rate=3e-3),
            callbacks=NullCallbacks(),
        )
        write_artifact(trained, root / name, manifest={"base_model": {"id": arch}})
    return root, bases


def _files(count: int, seed: int) -> list[bytes]:
    images, _ = learnable_images(count, seed, size=40)
    return images[:count]


def _b64(files: list[bytes]) -> list[str]:
    return [base64.b64encode(data).decode("ascii") for data in files]


def test_every_image_model_answers_as_its_predictor(served: Any) -> None:
    root, bases = served
    files = _files(5, 7)
    harness = Harness(root, lambda arch: bases[arch])
    sent = {name: harness.submit(name, _b64(files)) for name in MODELS}
    harness.drain()
    for name, request in sent.items():
        reply = harness.replies[request.id]
        assert reply.ok, (name, reply)
        predictor = load_predictor(
            root / name, resolve_base=lambda arch: bases[arch], device=torch.device("cpu")
        )
        expected = predictor.predict(files, top_k=2)
        got = reply.predictions or []
        assert [p["label"] for p in got] == [p["label"] for p in expected], name
        for a, b in zip(got, expected, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5), name
    # probes on one base share its encoder: resnet's two probes; clip's probe and zero-shot
    shared = [key for key in harness.registry.backbones if key.startswith("base:")]
    assert len(shared) == 2
    resnet = next(key for key in shared if "resnet" in key)
    assert set(harness.registry.backbones[resnet].members) == {"resnet-probe", "resnet-probe-2"}
    # the lora and full models are their own backbones
    assert {"lora:vit-lora", "full:mobilenet-full"} <= set(harness.registry.backbones)
    # one forward per backbone: the two resnet probes' ten rows went through together
    mixed = [b for b in harness.batches if b.key[0] == resnet]
    assert len(mixed) == 1 and len(mixed[0].rows) == 10


def test_a_bad_image_refuses_only_its_request(served: Any) -> None:
    root, bases = served
    harness = Harness(root, lambda arch: bases[arch])
    good = harness.submit("resnet-probe", _b64(_files(2, 3)))
    member = harness.registry.get("resnet-probe", "resnet-probe")
    png = _files(1, 4)[0]
    broken = base64.b64encode(png[: len(png) // 2]).decode("ascii")  # a header, half the pixels
    with pytest.raises(ValueError, match=r"images\[1\] cannot be decoded"):
        member.encode([_b64([png])[0], broken])
    with pytest.raises(ValueError, match=r"images\[0\] is not base64"):
        member.encode(["not base64!"])
    harness.drain()
    assert harness.replies[good.id].ok


def test_images_past_the_pixel_cap_are_refused_before_decoding(served: Any) -> None:
    root, bases = served
    harness = Harness(root, lambda arch: bases[arch])
    member = harness.registry.get("resnet-probe", "resnet-probe")
    member.max_pixels = 100 * 100
    buffer = io.BytesIO()
    Image.new("RGB", (101, 100), (255, 0, 0)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="more than 10000 pixels"):
        member.encode(_b64([buffer.getvalue()]))


def test_transparency_is_laid_over_white_as_in_training(served: Any) -> None:
    """An RGBA file serves as its dataset copy did (app.datasets.images.decode.to_rgb)."""
    root, bases = served
    harness = Harness(root, lambda arch: bases[arch])
    member = harness.registry.get("resnet-probe", "resnet-probe")
    clear, white = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(clear, format="PNG")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(white, format="PNG")
    rows = member.encode(_b64([clear.getvalue(), white.getvalue()]))
    assert torch.equal(rows[0].pixels, rows[1].pixels)  # type: ignore[union-attr]
