"""``zero_shot``: CLIP classifies images by its labels' names, with no training.

Each label's text (its name, or ``label_texts``) fills every prompt template; CLIP's text
tower embeds the prompts, each embedding is L2-normalised, a label's is the normalised mean
of its prompts' (prompt ensembling, Radford et al. 2021). The head is ``nn.Linear`` whose
rows are those label embeddings times CLIP's ``logit_scale``, with a zero bias, over the image
tower's normalised projected embedding (pooling ``embeds``): so its logits are exactly CLIP's
``logits_per_image`` for the prompts. The result is an ordinary ``head`` artifact over the
base, evaluated on the validation split like any other job; a ``linear_probe`` on the same
base (pooling ``embeds`` too) is the few-shot path.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoTokenizer, CLIPModel

from app.contract.strategies import ZeroShotStrategy
from worker.features import Featurizer
from worker.strategies.toolkit import split_features, trained_model
from worker.training.loop import FitResult, evaluate
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup
from worker.training.selection import Selector

POOLING = "embeds"


def label_text(label: str, config: ZeroShotStrategy) -> str:
    """What fills the templates for ``label``."""
    texts = config.label_texts or {}
    return texts.get(label) or label.replace("_", " ").replace("-", " ")


def zero_shot_head(setup: TrainingSetup, config: ZeroShotStrategy) -> nn.Linear:
    """The head whose logits over normalised image embeddings are CLIP's for the prompts."""
    clip = CLIPModel.from_pretrained(setup.base_model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(setup.base_model_dir)
    rows = []
    with torch.inference_mode():
        for label in setup.label_names:
            prompts = [template.format(label_text(label, config)) for template in config.templates]
            tokens = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
            embeds = clip.text_projection(clip.text_model(**tokens).pooler_output)
            mean = nn.functional.normalize(embeds, dim=-1).mean(dim=0)
            rows.append(nn.functional.normalize(mean, dim=-1))
        weight = torch.stack(rows) * clip.logit_scale.exp()
    head = nn.Linear(weight.shape[1], len(rows))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.zero_()  # a plain linear head, as every head artifact holds
    return head.to(setup.device).requires_grad_(False)


class ZeroShot(Strategy, name="zero_shot", artifact_kind="head"):
    def train(self, setup: TrainingSetup, config: ZeroShotStrategy) -> TrainedModel:
        head = zero_shot_head(setup, config)
        featurizer = Featurizer.for_base(
            setup.base_model_dir,
            tokenizer=setup.tokenizer,
            pooling=POOLING,
            max_length=0,
            batch_size=setup.hp.batch_size,
            device=setup.device,
            cache=setup.feature_cache,
        )
        # the validation split only: nothing trains, so the training split is not read
        (val_x,) = split_features(setup, featurizer, splits=(setup.validation,))
        labels = torch.tensor(setup.validation.labels, dtype=torch.long)
        batches = [(val_x[i : i + 256], labels[i : i + 256]) for i in range(0, len(labels), 256)]
        metrics = evaluate(
            head,
            head,
            batches,  # type: ignore[arg-type]
            multilabel=False,
            device=setup.device,
            label_names=setup.plan.label_names,
        )
        metrics.update({"epoch": 0.0, "step": 0.0})
        selector = Selector(setup.plan)
        selector.observe(metrics, head, setup.callbacks, final=True)
        result = FitResult([metrics], selector.finish(head, setup.callbacks), dict(metrics))
        setup.callbacks.on_event(
            "zero_shot",
            f"{len(setup.label_names)} labels x {len(config.templates)} prompt templates; "
            f"validation accuracy {metrics.get('val_accuracy', float('nan')):.4f} untrained",
            {"templates": config.templates, "metrics": metrics},
        )
        return trained_model(
            setup,
            result,
            strategy=self.name,
            kind="head",
            model=head,
            max_length=0,
            pooling=POOLING,
        )
