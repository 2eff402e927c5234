"""Several tuned models on one base: named by version or directory, chosen per request, mixed in one batch."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from router.cli import cli
from router.service import InputError, RouterService
from tests.test_late_prompt import TEXTS, _deep_tiny, _tune


def test_requests_name_their_prompt_and_two_prompts_share_one_base(tokenizer, tiny_train_file, tmp_path):
    from router.settings import Settings

    base = _deep_tiny(tokenizer)
    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, speculative_draft=False)
    models = settings.models_dir
    first, _ = _tune(base, tiny_train_file, models / "first", prompt_layer=2)
    second, _ = _tune(base, tiny_train_file, models / "second", prompt_layer=1, seed=5, init="random")
    service = RouterService(settings, base=base, tuned_path=first)
    by_version = service.route_many(TEXTS, "tuned", model="second")
    by_dir = service.route_many(TEXTS, "tuned", model=str(second))
    assert [r.model_version for r in by_version] == ["second"] * len(TEXTS)
    assert [r.departments for r in by_version] == [r.departments for r in by_dir]
    active = service.route_many(TEXTS, "tuned")
    assert {r.model_version for r in active} == {"first"}
    mixed = service.route_mixed(TEXTS, ["second", None] * (len(TEXTS) // 2))
    for i, routing in enumerate(mixed):
        want = (by_version if i % 2 == 0 else active)[i]
        assert (routing.departments, routing.model_version) == (want.departments, want.model_version)
    assert service.tuned_for("second") is service.tuned_for(str(second)), "loaded once"
    with pytest.raises(InputError, match="no tuned model 'third'") as err:
        service.route("my lamp broke", "tuned", model="third")
    assert err.value.field == "model"
    with pytest.raises(InputError, match="tuned strategy only"):
        service.route("my lamp broke", "zero-shot", model="second")


def test_route_model_option_names_a_version_or_says_what_exists(tiny_env):
    bad = CliRunner().invoke(cli, ["route", "--model", "no-such-version", "my lamp broke"])
    assert bad.exit_code == 2 and "no tuned model 'no-such-version'" in bad.output


def test_a_replaced_tuned_model_is_released_with_what_the_engine_prepared_for_it(tiny_settings, tiny_base, tiny_train_file,
                                                                                 tmp_path):
    import gc
    import weakref

    from tests.conftest import tune_tiny

    service = RouterService(tiny_settings, base=tiny_base)
    service.route("my lamp broke", "tuned")
    old = weakref.ref(service.tuned_model)
    assert old().prepared, "the engine's prepared prompt lives on the model"
    for n in range(3):
        path, _ = tune_tiny(tiny_base, tiny_train_file, tmp_path / f"v{n}", epochs=1)
        service.use_tuned(path)
        service.route("my lamp broke", "tuned")
    gc.collect()
    assert old() is None, "promote/rollback must not keep earlier models alive"
    assert not service.engine._prepared.get(("tuned", 0)), "the engine keeps no tuned state of its own"
