"""The launch form's logic: schema -> fields, presets -> base, edits -> config, 422 -> fields."""

from __future__ import annotations

from dashboard import forms
from e2h.config import TASK_OPTIONS_FIRST_CLASS, RunConfig, list_presets, load_preset
from e2h.schedulers import SCHEDULERS
from e2h.tasks import TASKS


def by_path(specs: list[forms.FieldSpec]) -> dict[str, forms.FieldSpec]:
    return {s.path: s for s in specs}


def test_runconfig_schema_becomes_typed_fields() -> None:
    specs = by_path(forms.fields_from_schema(RunConfig.model_json_schema(), skip=forms.STRUCTURAL))
    assert "task.name" not in specs and "scheduler.params" not in specs
    steps = specs["algorithm.max_steps"]
    assert (steps.kind, steps.default, steps.minimum, steps.group) == ("int", 200, 1, "Algorithm")
    assert steps.help == "Optimizer steps."
    assert specs["algorithm.learning_rate"].kind == "float"
    assert specs["algorithm.learning_rate"].minimum is None  # exclusive bounds are the server's to check
    assert specs["algorithm.use_vllm"].kind == "bool"
    assert specs["algorithm.vllm_mode"].options == ["server", "colocate"]
    assert specs["model.dtype"].kind == "enum"
    prompt = specs["algorithm.max_prompt_length"]
    assert (prompt.kind, prompt.nullable, prompt.default) == ("int", True, 128)
    assert specs["model.lora"].kind == "json" and specs["model.lora"].nullable
    assert "task.options" not in specs  # drawn from the chosen task's options schema instead (below)


def test_every_tasks_options_schema_gives_typed_fields_with_its_defaults() -> None:
    for name, cls in TASKS.items():
        specs = by_path(forms.task_option_fields(cls.options_schema()))
        assert specs and all(p.startswith("task.options.") for p in specs), name
        # A run sets levels and rewards with task fields of its own: never twice on the form.
        assert not {f"task.options.{k}" for k in TASK_OPTIONS_FIRST_CLASS} & set(specs), name
        assert specs["task.options.user_template"].kind == "text", name  # a text area
        assert specs["task.options.long_prompts"].options == ["refuse", "drop"], name
        defaults = {p.removeprefix("task.options."): s.default for p, s in specs.items()}
        assert defaults == {k: v for k, v in cls.options().items() if k not in TASK_OPTIONS_FIRST_CLASS}, name
    countdown = by_path(forms.task_option_fields(TASKS["countdown"].options_schema()))
    target = countdown["task.options.max_target"]
    assert (target.kind, target.default, target.minimum, target.group) == ("int", 1000, 1, "Task options")
    assert countdown["task.options.rules"].options == ["e2h", "seed"]
    coding = by_path(forms.task_option_fields(TASKS["coding"].options_schema()))
    assert coding["task.options.timeout_s"].kind == "float" and coding["task.options.timeout_s"].minimum is None
    assert coding["task.options.max_workers"].nullable and coding["task.options.max_workers"].kind == "int"
    assert coding["task.options.network_namespace"].options == ["auto", "off", "require"]
    dataset = by_path(forms.task_option_fields(TASKS["dataset"].options_schema()))
    assert (dataset["task.options.path"].kind, dataset["task.options.path"].nullable) == ("str", True)
    assert dataset["task.options.recipe"].options == ["math", "gsm8k", "aqua"]
    assert {"math", "countdown"} <= set(dataset["task.options.scorer"].options) and "dataset" not in (
        dataset["task.options.scorer"].options)
    assert dataset["task.options.data_files"].kind == "json"


def test_every_scheduler_schema_gives_fields_with_defaults() -> None:
    for name, cls in SCHEDULERS.items():
        specs = forms.fields_from_schema(cls.params_schema(), prefix="scheduler.params.")
        assert all(s.path.startswith("scheduler.params.") for s in specs), name
        assert all(s.default is not None or s.nullable for s in specs), name  # None: the scheduler decides
    vr = by_path(forms.fields_from_schema(SCHEDULERS["variance_regularized"].params_schema(), "scheduler.params."))
    assert vr["scheduler.params.min_prob"].default == 0.1
    assert vr["scheduler.params.weights.deficit"].group == "Weights"  # nested $ref flattened
    gaussian = by_path(forms.fields_from_schema(SCHEDULERS["gaussian"].params_schema(), "scheduler.params."))
    assert gaussian["scheduler.params.min_prob"].kind == "json"  # true | false | a number


def test_presets_compose_in_group_order_and_unchanged_fields_stay_out() -> None:
    presets = {g: {n: load_preset(g, n) for n in names} for g, names in list_presets().items()}
    base = forms.compose_presets(presets, {"model": "qwen15", "task": "countdown2345", "algorithm": None,
                                           "scheduler": "cosine"})
    assert base["model"]["name_or_path"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert base["task"]["train_levels"] == [2, 3, 4, 5]
    eff = forms.effective_base(base, "countdown", "cosine")
    specs = forms.fields_from_schema(RunConfig.model_json_schema(), skip=forms.STRUCTURAL)
    values = {s.path: forms.initial_value(s, eff) for s in specs}
    values["algorithm.max_steps"] = 30
    config = forms.build_config(eff, specs, values)
    assert config["algorithm"] == {**base["algorithm"], "max_steps": 30}
    assert config["task"] == base["task"]  # as the preset has it: no field the form showed unchanged is added
    RunConfig.model_validate(config)
    # Another task or scheduler drops what the preset set for the old one.
    switched = forms.effective_base(base, "arithmetic", "gaussian")
    assert switched["task"] == {"name": "arithmetic"} and switched["scheduler"] == {"name": "gaussian"}
    assert switched["model"] == base["model"]


def test_text_fields_take_json_or_yaml() -> None:
    spec = forms.FieldSpec("task.options", "Options", "json")
    assert forms.parse_text(spec, '{"path": "x.jsonl"}') == {"path": "x.jsonl"}
    assert forms.parse_text(spec, "true") is True
    assert forms.parse_text(spec, "") is None
    try:
        forms.parse_text(spec, "{unclosed")
    except forms.FieldError as e:
        assert e.path == "task.options"
    else:
        raise AssertionError("no FieldError")
    assert forms.split_tags(" a, b ,,c ") == ["a", "b", "c"]


def test_422_errors_land_on_the_field_they_name() -> None:
    detail = [
        {"type": "value_error", "loc": ["body", "config"], "field": "config.scheduler.params.min_prob",
         "msg": "Value error, scheduler.params: min_prob=0.5 is infeasible for 5 levels"},
        {"type": "too_short", "loc": ["body", "tags", 0], "field": "tags.0", "msg": "String should have at least 1"},
        {"type": "value_error", "loc": ["body", "config"], "field": "config.task.options.path", "msg": "no such file"},
        {"type": "value_error", "loc": ["body", "config"], "field": "config", "msg": "something general"},
    ]
    messages = forms.error_messages(detail)
    assert messages[0] == ("scheduler.params.min_prob", "scheduler.params: min_prob=0.5 is infeasible for 5 levels")
    placed = forms.place_errors(messages, ["scheduler.params.min_prob", "run.tags", "task.options"])
    assert placed["scheduler.params.min_prob"] == [messages[0][1]]
    assert placed["run.tags"] == ["String should have at least 1"]
    assert placed["task.options"] == ["no such file"]
    assert placed[""] == ["something general"]
    assert forms.error_messages("plain text") == [("", "plain text")]
