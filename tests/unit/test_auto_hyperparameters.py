"""The ``auto`` rules (app/jobs/auto_hyperparameters.py) on crafted profiles where the right
choice is known."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import StrategyConfig
from app.jobs.auto_hyperparameters import (
    MAX_EPOCHS,
    MIN_STEPS_FINE_TUNE,
    MIN_STEPS_HEAD,
    choose,
    profile,
)


def strategy(name: str, **fields: object) -> StrategyConfig:
    return TypeAdapter(StrategyConfig).validate_python({"name": name, **fields})


def data(
    rows: int,
    counts: dict[str, int] | None = None,
    *,
    task: str = "text-classification",
    modality: str = "text",
    family: str = "encoder",
    params: int | None = 22_700_000,
    held_out: float = 0.0,
    **tokens: int | None,
):
    """The profile of ``rows`` examples (two even classes unless ``counts`` says)."""
    return profile(
        task=task,
        num_rows=rows,
        label_counts=counts or {"a": rows // 2, "b": rows - rows // 2},
        validation_held_out=held_out,
        modality=modality,
        family=family,
        parameters=params,
        **tokens,
    )


def text_data(rows: int, counts: dict[str, int] | None = None, params: int = 22_700_000):
    return data(rows, counts, params=params)


def chosen(
    name: str, data, hp: dict | None = None, **fields: object
) -> tuple[Hyperparameters, dict]:
    body = Hyperparameters.model_validate(hp or {})
    result, choices = choose(
        body, strategy(name, **fields), data, requested=set(body.model_fields_set)
    )
    return result, {c.field: c for c in choices}


def test_small_data_gets_a_high_rate_small_batches_and_enough_steps() -> None:
    hp, why = chosen("full", text_data(240))
    assert hp.learning_rate == 2e-4  # measured: 0.98 on 240 BBC articles where 2e-5 gave 0.69
    assert hp.batch_size == 16
    steps = hp.epochs * math.ceil(240 / hp.batch_size)
    assert steps >= MIN_STEPS_FINE_TUNE and hp.epochs == 10
    assert "240 training examples" in why["learning_rate"].reason
    tiny, _ = chosen("full", text_data(40))
    assert tiny.batch_size == 8 and tiny.epochs == MAX_EPOCHS  # 5 steps an epoch: capped


def test_large_data_gets_the_textbook_rate_and_two_epochs() -> None:
    hp, why = chosen("full", text_data(50_000))
    assert (hp.learning_rate, hp.batch_size, hp.epochs) == (3e-5, 32, 2)
    assert "two passes" in why["epochs"].reason


def test_rates_move_geometrically_between_small_and_large_data() -> None:
    rates = [chosen("lora", text_data(n))[0].learning_rate for n in (300, 500, 1581, 5000, 9000)]
    assert rates[0] == rates[1] == 1e-3 and rates[3] == rates[4] == 5e-4
    assert rates[1] > rates[2] > rates[3]
    assert rates[2] == pytest.approx(math.sqrt(1e-3 * 5e-4), rel=0.02)


def test_what_the_request_gives_is_kept() -> None:
    hp, why = chosen("full", text_data(240), {"epochs": 2, "learning_rate": 5e-5, "batch_size": 4})
    assert (hp.epochs, hp.learning_rate, hp.batch_size) == (2, 5e-5, 4)
    assert set(why) == set()
    null_rate, why = chosen("full", text_data(240), {"learning_rate": None})
    assert null_rate.learning_rate is None and "learning_rate" not in why  # the fixed default


def test_auto_is_the_same_as_leaving_a_field_out() -> None:
    a, _ = chosen(
        "full", text_data(240), {"epochs": "auto", "learning_rate": "auto", "batch_size": "auto"}
    )
    b, _ = chosen("full", text_data(240))
    assert a == b


def test_heads_on_frozen_features_keep_their_rate_and_need_fewer_steps() -> None:
    hp, why = chosen("linear_probe", text_data(240))
    assert hp.learning_rate == 1e-2
    assert hp.epochs == math.ceil(MIN_STEPS_HEAD / math.ceil(240 / 16))
    assert "head on frozen features" in why["learning_rate"].reason


def test_dapt_takes_the_rate_of_what_it_runs_after_pretraining() -> None:
    lora_after, _ = chosen("dapt", text_data(240), unlabeled_dataset_id="ds_x", then="lora")
    assert lora_after.learning_rate == 1e-3
    probe_after, _ = chosen(
        "dapt", text_data(240), unlabeled_dataset_id="ds_x", then="linear_probe"
    )
    assert probe_after.learning_rate == 1e-2


def test_big_text_models_take_half_and_convnets_take_their_own() -> None:
    big, why = chosen("full", text_data(240, params=110_000_000))
    assert big.learning_rate == 1e-4 and "halved" in why["learning_rate"].reason
    images = data(
        3000,
        task="image-classification",
        modality="image",
        family="convnet",
        params=3_500_000,
        held_out=0.1,
    )
    assert images.train_rows == 2700
    assert chosen("full", images)[0].learning_rate == 1e-3  # measured on Fashion-MNIST
    assert chosen("lora", images)[0].learning_rate < 2e-3


def test_imbalance_turns_on_class_weights_and_macro_f1_unless_asked_otherwise() -> None:
    skewed = text_data(400, {"great": 300, "other": 100})
    hp, why = chosen("full", skewed)
    assert hp.class_weights == "auto" and hp.early_stopping.metric == "val_macro_f1"
    assert hp.temperature_scaling is True
    assert "3.0:1" in why["class_weights"].reason
    given = {"class_weights": None, "early_stopping": {"patience": 5}, "temperature_scaling": False}
    kept, why = chosen("full", skewed, given)
    assert kept.class_weights is None and kept.early_stopping.metric == "val_loss"
    assert not kept.temperature_scaling
    assert not {"class_weights", "early_stopping", "temperature_scaling"} & set(why)
    mild, why = chosen("full", text_data(400, {"great": 220, "other": 180}))
    assert mild.class_weights is None and "class_weights" not in why
    multilabel = data(400, {"x": 300, "y": 10}, task="text-multilabel", params=None, held_out=0.1)
    assert "class_weights" not in chosen("full", multilabel)[1]


def test_max_length_covers_long_texts_up_to_the_models_limit() -> None:
    def with_tokens(p90: int | None, model_max: int | None = 512):
        return data(2000, params=None, held_out=0.1, tokens_p90=p90, model_max=model_max)

    hp, why = chosen("full", with_tokens(300))
    assert hp.max_length == 320 and "300 tokens" in why["max_length"].reason
    bbc, why = chosen("full", with_tokens(755))  # BBC News: median 427, p90 755 tokens
    assert bbc.max_length == 512 and "the model's limit" in why["max_length"].reason
    assert chosen("full", with_tokens(90))[0].max_length == 256  # never lowered
    assert "max_length" not in chosen("full", with_tokens(None))[1]  # no scan: the default
    asked, why = chosen("full", with_tokens(755), {"max_length": 128})
    assert asked.max_length == 128 and "max_length" not in why


def test_texts_beyond_the_window_are_read_by_their_head_and_tail() -> None:
    def with_tokens(p90: int | None, task: str = "text-classification", modality: str = "text"):
        return data(2000, task=task, modality=modality, tokens_p90=p90, model_max=512)

    bbc, why = chosen("full", with_tokens(755))  # past the model's 512 even when raised
    assert (bbc.max_length, bbc.long_text) == (512, "head_tail")
    assert "512 tokens" in why["long_text"].reason
    covered, why = chosen("full", with_tokens(300))  # max_length 320 covers them
    assert covered.long_text == "truncate" and "long_text" not in why
    short_window, why = chosen("lora", with_tokens(300), {"max_length": 128})
    assert short_window.long_text == "head_tail"  # a window asked short: still both ends
    asked, why = chosen("full", with_tokens(755), {"long_text": "chunks"})
    assert asked.long_text == "chunks" and "long_text" not in why
    assert chosen("full", with_tokens(755), {"long_text": "auto"})[0].long_text == "head_tail"
    pairs = with_tokens(755, task="text-pair-classification")
    assert chosen("full", pairs)[0].long_text == "truncate"  # a pair has no single tail
    assert chosen("full", with_tokens(None))[0].long_text == "truncate"  # no scan


def test_auto_candidates_follow_the_data() -> None:
    from app.jobs.auto_hyperparameters import auto_candidates

    assert auto_candidates(text_data(200, {"a": 190, "b": 10}))[0] == [
        "linear_probe",
        "contrastive",
    ]
    assert auto_candidates(text_data(1500))[0] == ["linear_probe", "lora", "full"]
    names, why = auto_candidates(text_data(40_000))
    assert names == ["lora", "full"] and "large data" in why
    images = data(
        100,
        task="image-classification",
        modality="image",
        family="convnet",
        params=None,
        held_out=0.1,
    )
    assert auto_candidates(images)[0] == ["linear_probe", "lora", "full"]
    multilabel = data(100, {"a": 5, "b": 50}, task="text-multilabel", params=None, held_out=0.1)
    assert "contrastive" not in auto_candidates(multilabel)[0]  # single-label only
