from __future__ import annotations

from fastapi import APIRouter

from app.base_models.registry import list_base_models
from app.base_models.schemas import BaseModelList, BaseModelRead
from app.deps import SettingsDep, TenantDep

router = APIRouter(prefix="/v1/base-models", tags=["base-models"])


@router.get("", response_model=BaseModelList)
def list_models(_: TenantDep, settings: SettingsDep) -> BaseModelList:
    """The pretrained models this deployment can fine-tune (nothing is fetched from a hub):
    text encoders, GPT-2 style decoders, image models (ResNet, ViT, ConvNeXt, MobileNetV2) and
    CLIP, each with what it reads (`modality`), how it is built (`family`) and the dataset
    tasks it can train on."""
    return BaseModelList(
        data=[
            BaseModelRead(
                id=m.id,
                task_families=m.task_families,
                modality=m.modality,
                family=m.family,
                tasks=m.tasks,
                zero_shot=m.zero_shot,
                architecture=m.architecture,
                model_type=m.model_type,
                parameter_count=m.parameter_count,
                max_length=m.max_length,
                image_size=m.image_size,
                pooling=m.pooling,
                source=m.source,
            )
            for m in list_base_models(settings)
        ]
    )
