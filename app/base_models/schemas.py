"""The base-model listing's response shapes (``GET /v1/base-models``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.base_models.kinds import Family, Modality


class BaseModelRead(BaseModel):
    id: str = Field(description="What a job's `base_model` names: the folder or packaged name.")
    task_families: list[str] = Field(
        description="`text` or `image`: the kind of dataset a job on this base must have."
    )
    modality: Modality = Field(
        description="What the model reads: `text`, `image`, or `image-text` (CLIP: an image "
        "tower and a text tower)."
    )
    family: Family = Field(
        description="How it is built: `encoder` (BERT-style text encoder), `decoder` (GPT-2 "
        "style, last-token pooling), `convnet` (ResNet, ConvNeXt, MobileNetV2), "
        "`vision-transformer` (ViT and kin) or `dual-encoder` (CLIP)."
    )
    tasks: list[str] = Field(
        description="The dataset tasks it can train on: the labelled text tasks for text models, "
        "`image-classification` and `image-multilabel` for image models and CLIP (whose "
        "vision tower is probed or fine-tuned)."
    )
    zero_shot: bool = Field(
        description="Classifies images against label names without training (CLIP with its "
        "tokenizer saved)."
    )
    architecture: str = Field(
        description="The first of `architectures` in its config.json, e.g. "
        "`MobileNetV2ForImageClassification`."
    )
    model_type: str = Field(description="`model_type` in its config.json, e.g. `bert`, `vit`.")
    parameter_count: int = Field(description="Parameters in its safetensors weights.")
    max_length: int | None = Field(
        description="Longest text input in tokens (position embeddings); null for image models."
    )
    image_size: int | None = Field(
        description="Side in pixels of the images its processor gives it; null for text models."
    )
    pooling: str | None = Field(
        description="Pooling a sentence-transformers text model declares (`mean`, `cls`, `max`)."
    )
    source: str = Field(
        description="`directory` (under TUNESERVE_BASE_MODELS_DIR) or `package:<name>`."
    )


class BaseModelList(BaseModel):
    data: list[BaseModelRead]
    next_cursor: str | None = None
