"""Image classification through the one recipe layer: ``linear_probe``, ``partial``,
``gradual_unfreeze``, ``full`` and ``lora`` on tiny random ResNet, ViT, ConvNeXt, MobileNetV2
and CLIP (vision tower) models; each strategy's defining property, the artifact serving what
was trained, augmentation drawn at training time (so a resumed run is exact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import (
    FullStrategy,
    GradualUnfreezeStrategy,
    LinearProbeStrategy,
    LoraStrategy,
    PartialStrategy,
)
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.core.images import augment, decode
from worker.core.models import load_classifier, load_encoder
from worker.reporting import final_evaluation
from worker.serving.predictor import load_predictor
from worker.strategies.layer_groups import layer_group, num_layers_of
from worker.strategies.registry import train_model
from worker.testing import learnable_images
from worker.training.callbacks import NullCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer
from worker.training.recipe import TrainedModel

LABELS = ["A", "B"]
ARCHITECTURES = ["resnet", "vit", "convnext", "mobilenet_v2", "clip"]
MANIFEST = {"base_model": {"id": "tiny"}}
CPU = torch.device("cpu")


def _splits(n_per_class: int = 16, seed: int = 0) -> tuple[Examples, Examples]:
    images, names = learnable_images(n_per_class, seed)
    labels = [LABELS.index(name) for name in names]
    cut = len(images) * 3 // 4
    return (
        Examples([], labels[:cut], images=images[:cut]),
        Examples([], labels[cut:], images=images[cut:]),
    )


@pytest.fixture(scope="module")
def bases(request: pytest.FixtureRequest) -> dict[str, Path]:
    return {arch: request.getfixturevalue(f"tiny_{arch}_dir") for arch in ARCHITECTURES}


def _train(
    base: Path, strategy: Any, callbacks: Any = None, checkpoint: Any = None, **hp: Any
) -> TrainedModel:
    train, validation = _splits()
    settings = {"epochs": 2, "batch_size": 8, "seed": 0, "learning_rate": 3e-3, **hp}
    return train_model(
        base_model_dir=base,
        task="image-classification",
        label_names=LABELS,
        train=train,
        validation=validation,
        strategy=strategy,
        hp=Hyperparameters(**settings),
        callbacks=callbacks or NullCallbacks(),
        checkpoint=checkpoint,
    )


def _fresh(base: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = load_classifier(base, label_names=LABELS, multilabel=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _served_matches(trained: TrainedModel, tmp_path: Path) -> None:
    """The artifact on disk predicts what the final evaluation measured in memory."""
    _, validation = _splits()
    dest = write_artifact(trained, tmp_path / "m", manifest=MANIFEST)
    served = load_predictor(dest, device=CPU).logits(list(validation.images or []))
    evaluation = final_evaluation(
        trained, validation=validation, test=None, hp=Hyperparameters(), device=CPU
    )
    assert evaluation.validation is not None
    predicted = served.argmax(dim=1).tolist()
    accuracy = sum(p == y for p, y in zip(predicted, validation.labels, strict=True)) / len(
        predicted
    )
    assert evaluation.validation["accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_full_trains_every_weight_and_serves_it(
    bases: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    trained = _train(bases[arch], FullStrategy())
    assert trained.kind == "full"
    before = _fresh(bases[arch])
    unchanged = [n for n, p in trained.model.named_parameters() if torch.equal(p, before[n])]
    # CLIP's image classifier averages the patch states and never reads post_layernorm
    assert unchanged == (
        [] if arch != "clip" else [f"vision_model.post_layernorm.{w}" for w in ("weight", "bias")]
    )
    _served_matches(trained, tmp_path)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_partial_keeps_the_lower_layers_and_the_stem_bit_identical(
    bases: dict[str, Path], arch: str
) -> None:
    trained = _train(bases[arch], PartialStrategy(trainable_layers=1))
    before = _fresh(bases[arch])
    num_layers = num_layers_of(trained.model)
    assert num_layers >= 2
    state = trained.model.state_dict()
    frozen = [name for name in state if layer_group(name, num_layers) >= 2]
    assert frozen and any("embed" in n or "stem" in n for n in frozen)
    for name in frozen:  # weights and batch-norm statistics alike
        assert torch.equal(state[name], before[name]), name
    top = [n for n, p in trained.model.named_parameters() if layer_group(n, num_layers) == 1]
    assert any(not torch.equal(state[n], before[n]) for n in top)


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_gradual_unfreeze_opens_the_groups_top_down(bases: dict[str, Path], arch: str) -> None:
    events: list[str] = []

    class Events(NullCallbacks):
        def on_event(self, kind: str, message: str, data: Any = None) -> None:
            if kind == "unfreeze":
                events.append(data["group"])

    config = GradualUnfreezeStrategy(unfreeze_every=1, unfreeze_unit="step")
    trained = _train(bases[arch], config, Events(), epochs=2)
    layers = num_layers_of(trained.model)
    assert events == [*(f"layer.{i}" for i in reversed(range(layers))), "embeddings"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_lora_adapts_and_leaves_the_base_bit_identical(
    bases: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    trained = _train(bases[arch], LoraStrategy(r=4))
    assert trained.kind == "lora"
    trainable = [n for n, p in trained.model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    base = trained.model.get_base_model()
    before = _fresh(bases[arch])
    for name, tensor in base.state_dict().items():
        original = name.replace(".base_layer", "")
        if "lora_" in name or "modules_to_save" in name or original not in before:
            continue
        if original.startswith("classifier"):
            continue  # the head trains (its copy in modules_to_save); the original is unused
        assert torch.equal(tensor, before[original]), name
    _served_matches(trained, tmp_path)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_linear_probe_computes_features_once(
    bases: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    encoder_type = type(load_encoder(bases[arch]))
    passes: list[int] = []

    def count(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, encoder_type):
            passes.append(1)

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        trained = _train(bases[arch], LinearProbeStrategy(), epochs=4, learning_rate=1e-2)
    finally:
        hook.remove()
    train, validation = _splits()
    # one batch of 8 per forward: every image went through the encoder once, in 4 epochs
    assert len(passes) == -(-len(train) // 8) + -(-len(validation) // 8)
    assert trained.kind == "head" and trained.pooling in {"cls", "pooler", "embeds"}
    _served_matches(trained, tmp_path)


def test_augmentation_is_seeded_and_flips_can_be_turned_off() -> None:
    images, _ = learnable_images(2, 0)
    image = decode(images[0])
    torch.manual_seed(1)
    a = augment(image, crop=True, flip=True)
    torch.manual_seed(1)
    b = augment(image, crop=True, flip=True)
    assert a.tobytes() == b.tobytes() and a.size == image.size
    for seed in range(20):  # without crop or flip the image is untouched
        torch.manual_seed(seed)
        assert augment(image, crop=False, flip=False).tobytes() == image.tobytes()
    flipped = {augment(image, crop=False, flip=True).tobytes() for _ in range(20)}
    assert flipped == {image.tobytes(), image.transpose(0).tobytes()}  # FLIP_LEFT_RIGHT == 0


def test_a_released_image_job_resumes_exactly(bases: dict[str, Path], tmp_path: Path) -> None:
    """Crops and flips are drawn when a batch trains, from the checkpointed RNG: the resumed
    run trains on exactly the images the uninterrupted one did."""

    class ReleaseAt(NullCallbacks):
        def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
            if step == 3:
                raise TrainingReleased("worker shutting down")

    checkpoint = Checkpointer(tmp_path / "ckpt", every_steps=1000)
    with pytest.raises(TrainingReleased):
        _train(bases["resnet"], FullStrategy(), ReleaseAt(), checkpoint)
    resumed = _train(bases["resnet"], FullStrategy(), None, checkpoint)
    uninterrupted = _train(bases["resnet"], FullStrategy())
    for name, tensor in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=1e-6)


def test_an_image_lora_exports_to_a_plain_transformers_model(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from worker.export import export_merged

    trained = _train(bases["vit"], LoraStrategy(r=4))
    manifest = {"base_model": {"id": "tiny", "path": str(bases["vit"])}}
    artifact = write_artifact(trained, tmp_path / "m", manifest=manifest)
    merged = export_merged(artifact, tmp_path / "merged")
    _, validation = _splits()
    images = [decode(image) for image in validation.images or []]
    model = AutoModelForImageClassification.from_pretrained(merged).eval()
    pixels = AutoImageProcessor.from_pretrained(merged)(images=images, return_tensors="pt")
    with torch.inference_mode():
        plain = model(**pixels).logits
    served = load_predictor(artifact, device=CPU).logits(list(validation.images or []))
    torch.testing.assert_close(plain, served, atol=1e-4, rtol=1e-4)
