"""Every task's options model: a JSON-serialisable schema whose defaults build the task, and the
validation get_task and RunConfig share (problems name the option as data)."""

from __future__ import annotations

import json

import pytest

from e2h.errors import FieldProblem
from e2h.tasks import TASKS, get_task
from e2h.tasks.e2h_data import RECIPES
from tests.tasks.test_tasks_dataset import ROWS, write_jsonl


@pytest.fixture
def data_path(tmp_path) -> str:
    return write_jsonl(tmp_path / "data.jsonl", ROWS)


def _needed(name: str, data_path: str) -> dict:
    return {"path": data_path} if name == "dataset" else {}  # the one option without a default


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_schema_is_json_and_its_defaults_build_the_task(name, data_path):
    cls = TASKS[name]
    schema = json.loads(json.dumps(cls.options_schema()))  # what GET /tasks sends
    props = schema["properties"]
    assert schema.get("required", []) == [] and schema["additionalProperties"] is False
    assert all(prop.get("description") for prop in props.values()), name  # the form's help text
    defaults = {key: prop["default"] for key, prop in props.items()}
    assert defaults == json.loads(json.dumps(cls.options())), name
    built = get_task(name, **{**defaults, **_needed(name, data_path)})
    plain = get_task(name, **_needed(name, data_path))
    assert built.describe() == plain.describe(), name
    assert (built.system_prompt, built.user_template, built.long_prompts) == (
        plain.system_prompt, plain.user_template, plain.long_prompts)
    assert built.opts == plain.opts
    level = built.levels[0]
    assert built.generate(level, 3, seed=5) == plain.generate(level, 3, seed=5)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_none_means_the_default(name, data_path):
    nones = dict.fromkeys(("levels", "heldout_levels", "format_reward", "correctness_reward", "system_prompt",
                           "user_template"))
    task = get_task(name, **nones, **_needed(name, data_path))
    assert task.describe() == get_task(name, **_needed(name, data_path)).describe()
    assert task.system_prompt == TASKS[name].options()["system_prompt"]


def test_a_bad_option_is_a_field_problem_naming_it_with_every_problem_in_the_message():
    with pytest.raises(FieldProblem) as caught:
        get_task("countdown", rules="strict", max_target=True, bogus=1)
    assert caught.value.path == "max_target"  # the first, in declaration order
    message = str(caught.value)
    assert "max_target: Input should be a valid integer" in message
    assert "rules: Input should be 'e2h' or 'seed'" in message
    assert "bogus: unknown option for task 'countdown'" in message
    problems = TASKS["countdown"].check_options({"min_number": 7, "max_number": 3, "max_target": 2})
    assert [(p.path, str(p)) for p in problems] == [("max_number", "max_number: must be >= min_number (7), got 3")]
    assert TASKS["countdown"].check_options({"rules": "seed", "max_target": 500}) == []


def test_checking_dataset_options_reads_no_data(tmp_path):
    missing = str(tmp_path / "missing.jsonl")
    assert TASKS["dataset"].check_options({"path": missing, "recipe": "gsm8k"}) == []  # valid, never opened
    with pytest.raises(ValueError, match="does not exist"):
        get_task("dataset", path=missing)


def test_a_recipe_fills_what_is_not_set(data_path):
    recipe = RECIPES["gsm8k"]
    task = get_task("dataset", path=data_path, recipe="gsm8k")
    assert (task.system_prompt, task.user_template, task.scorer.name) == (
        recipe["system_prompt"], recipe["user_template"], "gsm8k")
    own = get_task("dataset", path=data_path, recipe="gsm8k", system_prompt="", scorer="aqua")
    assert (own.system_prompt, own.user_template, own.scorer.name) == ("", recipe["user_template"], "aqua")
