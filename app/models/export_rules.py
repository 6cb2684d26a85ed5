"""Which ``head`` artifacts can become a plain ``transformers`` classification model.

A ``head`` artifact is a linear head over a pooled vector of its encoder (pooling ``cls``,
``mean``, ``max``, ``pooler``, ``last`` or ``embeds``). ``as_full`` rebuilds it as the
architecture's own ``...ForSequenceClassification`` / ``...ForImageClassification`` with the
head's weights in that model's classifier: exact only when the classifier reads exactly the
probe's pooled vector through one linear layer. This table says, per ``model_type``, which
pooled vector the architecture's classifier reads and where its linear layer sits; each entry
is checked by comparing logits in ``tests/worker/test_export_full.py``. Pure data (no torch):
the API answers 422 ``export_unsupported`` from it, the worker builds from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OwnHead:
    """A model type's own classification model: what it classifies, and its linear layer."""

    architecture: str
    #: the probe pooling whose vector the classifier reads, unchanged
    reads: str
    #: the dotted path of the classifier's ``nn.Linear`` in the classification model
    linear: str
    #: for people: what that vector is
    what: str


OWN_HEADS: dict[str, OwnHead] = {
    "resnet": OwnHead(
        "ResNetForImageClassification", "pooler", "classifier.1", "the global average pool"
    ),
    "mobilenet_v2": OwnHead(
        "MobileNetV2ForImageClassification",
        "pooler",
        "classifier",
        "the global average pool (dropout is off in eval mode)",
    ),
    "convnext": OwnHead(
        "ConvNextForImageClassification",
        "pooler",
        "classifier",
        "the layer-normed global average pool",
    ),
    "vit": OwnHead("ViTForImageClassification", "cls", "classifier", "the final [CLS] state"),
    "bert": OwnHead(
        "BertForSequenceClassification",
        "pooler",
        "classifier",
        "the pooler output (dense + tanh over [CLS]; dropout is off in eval mode)",
    ),
}


class HeadNotConvertible(ValueError):
    """The head's pooled vector is not what any plain classification model of its type reads."""


def own_head_for(model_type: str, pooling: str) -> OwnHead:
    """The classification model a head over ``model_type`` pooled by ``pooling`` becomes;
    :class:`HeadNotConvertible` (its message says why) when there is none."""
    own = OWN_HEADS.get(model_type)
    if own is None:
        raise HeadNotConvertible(
            f"No plain transformers classification model of type {model_type!r} is known to "
            f"classify the {pooling!r} pooled vector with one linear layer (known: "
            f"{', '.join(f'{t} with {h.reads!r}' for t, h in OWN_HEADS.items())})."
        )
    if own.reads != pooling:
        raise HeadNotConvertible(
            f"{own.architecture} classifies {own.what} (pooling {own.reads!r}), but this head "
            f"was trained on the {pooling!r} pooled vector: the full model would compute "
            "other logits."
        )
    return own
