from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.base_models.registry import list_base_models
from app.deps import SettingsDep, TenantDep

router = APIRouter(prefix="/v1/base-models", tags=["base-models"])


class BaseModelRead(BaseModel):
    id: str
    task_families: list[str]
    architecture: str
    model_type: str
    parameter_count: int
    max_length: int | None
    pooling: str | None
    source: str


class BaseModelList(BaseModel):
    data: list[BaseModelRead]
    next_cursor: str | None = None


@router.get("", response_model=BaseModelList)
def list_models(_: TenantDep, settings: SettingsDep) -> BaseModelList:
    """The pretrained models this deployment can fine-tune (nothing is fetched from a hub)."""
    return BaseModelList(
        data=[
            BaseModelRead(
                id=m.id,
                task_families=m.task_families,
                architecture=m.architecture,
                model_type=m.model_type,
                parameter_count=m.parameter_count,
                max_length=m.max_length,
                pooling=m.pooling,
                source=m.source,
            )
            for m in list_base_models(settings)
        ]
    )
