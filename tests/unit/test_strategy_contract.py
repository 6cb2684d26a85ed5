"""The REST contract of strategies equals the worker's registry, and every knob is documented."""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import BaseModel

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import STRATEGY_NAMES, StrategyConfig


def _union_members() -> list[type[BaseModel]]:
    union = typing.get_args(StrategyConfig)[0]
    return list(typing.get_args(union))


def _union_names() -> set[str]:
    names = set()
    for cls in _union_members():
        (name,) = typing.get_args(cls.model_fields["name"].annotation)
        assert cls.model_fields["name"].default == name
        names.add(name)
    return names


def test_union_equals_strategy_names() -> None:
    assert _union_names() == set(STRATEGY_NAMES)
    assert len(_union_members()) == len(STRATEGY_NAMES)


def test_api_names_equal_worker_registry() -> None:
    from worker.strategies.registry import STRATEGIES

    assert set(STRATEGIES) == set(STRATEGY_NAMES), (
        f"only in the API: {sorted(set(STRATEGY_NAMES) - set(STRATEGIES))}; "
        f"only in the worker: {sorted(set(STRATEGIES) - set(STRATEGY_NAMES))}"
    )
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name


@pytest.mark.parametrize("model", [*_union_members(), Hyperparameters], ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    undocumented = [
        name
        for name, field in model.model_fields.items()
        if name != "name" and not (field.description and field.description.strip())
    ]
    assert undocumented == [], f"{model.__name__}: fields without a description: {undocumented}"
    assert (model.__doc__ or "").strip(), f"{model.__name__} has no docstring"


@pytest.mark.parametrize("model", _union_members(), ids=lambda m: m.__name__)
def test_strategy_configs_forbid_unknown_fields(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "partial", "trainable_layers": False},  # found by schemathesis: was 0
        {"name": "partial", "trainable_layers": "2"},
        {"name": "lora", "r": 8.5},
        {"name": "gradual_unfreeze", "slanted_triangular": "yes"},
    ],
)
def test_strategy_fields_are_not_coerced(body: dict[str, object]) -> None:
    from pydantic import TypeAdapter, ValidationError

    from app.contract.strategies import StrategyConfig

    with pytest.raises(ValidationError):
        TypeAdapter(StrategyConfig).validate_json(json.dumps(body))


@pytest.mark.parametrize("field", ["epochs", "batch_size", "seed", "max_length"])
def test_integer_hyperparameters_refuse_booleans(field: str) -> None:
    from pydantic import ValidationError

    from app.contract.hyperparameters import Hyperparameters

    with pytest.raises(ValidationError):
        Hyperparameters.model_validate_json(json.dumps({field: True}))
    assert Hyperparameters.model_validate_json('{"learning_rate": 1}').learning_rate == 1.0
