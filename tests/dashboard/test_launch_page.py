"""Launch page (AppTest) against a real server: presets, schema-driven fields, submit, 422, clone and edit."""

from __future__ import annotations

import pytest

from dashboard import nav
from e2h.tasks import TASKS
from tests.dashboard.apptest import assert_clean, button, next_sibling, open_page, shown, widget
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow


def test_form_has_presets_and_the_schedulers_schema(dashboard_env: str) -> None:
    at = open_page(nav.LAUNCH)
    assert at.title[0].value == "Launch a run"
    presets = {w.label: w.value for w in at.selectbox if w.label.endswith("preset")}
    assert presets == {"Model preset": "tiny", "Task preset": "arithmetic", "Algorithm preset": "grpo",
                       "Scheduler preset": "variance_regularized"}
    assert widget(at.selectbox, "scheduler.name").value == "variance_regularized"
    min_prob = widget(at.number_input, "scheduler.params.min_prob")
    assert min_prob.value == 0.1 and min_prob.proto.help == "Exact floor on every level's probability."
    assert widget(at.number_input, "scheduler.params.weights.deficit").value == 0.3
    assert widget(at.number_input, "algorithm.max_steps").value == 200
    assert widget(at.multiselect, "task.train_levels").value == [0, 1, 2, 3, 4]

    widget(at.selectbox, "scheduler.name").select("gaussian").run()
    assert_clean(at)
    assert widget(at.number_input, "scheduler.params.sigma").value == 0.5
    assert widget(at.text_input, "scheduler.params.min_prob").value == "true"
    assert not [w for w in at.number_input if w.key.endswith("scheduler.params.window_size")]

    widget(at.selectbox, "preset.task").select("countdown2345").run()
    assert widget(at.selectbox, "task.name").value == "countdown"
    assert widget(at.multiselect, "task.train_levels").value == [2, 3, 4, 5]


def test_submit_creates_the_run(dashboard_env: str, api) -> None:
    at = open_page(nav.LAUNCH)
    widget(at.number_input, "algorithm.max_steps").set_value(300)
    widget(at.number_input, "scheduler.params.warmup_steps").set_value(20)
    widget(at.text_input, "run.name").input("launched-from-form")
    widget(at.text_input, "run.tags").input("form, smoke")
    button(at, "Submit run").click().run()
    assert_clean(at)
    assert not at.error
    assert "queued" in at.success[0].value
    run = api.get(api.list_runs(tag="form").data[0].id)  # list items carry no config
    assert at.success[0].value.startswith(f"Run #{run.id} ")
    assert run.name == "launched-from-form" and run.tags == ["form", "smoke"] and run.status == "queued"
    assert run.max_steps == 300
    # Only what was chosen is sent: the scheduler's other parameters keep their defaults.
    assert run.config["scheduler"] == {"name": "variance_regularized", "params": {"warmup_steps": 20}}
    links = at.get("page_link")
    assert links and links[0].proto.label == f"Open run #{run.id}"


def test_a_422_is_shown_next_to_the_field_it_names(dashboard_env: str, api) -> None:
    before = api.list_runs().count
    at = open_page(nav.LAUNCH)
    widget(at.number_input, "scheduler.params.min_prob").set_value(0.5)
    button(at, "Submit run").click().run()
    assert_clean(at)
    assert api.list_runs().count == before
    field = widget(at.number_input, "scheduler.params.min_prob")
    assert field.value == 0.5  # the edit is kept
    message = next_sibling(at, field)
    assert message is not None and message.type == at.error[0].type  # an st.error right under the field
    assert "min_prob=0.5 is infeasible for 5 levels" in shown(message.value)
    assert "rejected" in at.error[0].value

    # A field-level check (pydantic) is placed the same way.
    widget(at.number_input, "scheduler.params.min_prob").set_value(0.1)
    widget(at.text_input, "model.name_or_path").input("")
    button(at, "Submit run").click().run()
    message = next_sibling(at, widget(at.text_input, "model.name_or_path"))
    assert "at least 1 character" in message.value

    # Unparseable text is caught before anything is sent.
    widget(at.text_input, "model.name_or_path").input("builtin:tiny")
    widget(at.text_input, "model.lora").input("{unclosed")
    button(at, "Submit run").click().run()
    assert "not valid JSON or YAML" in next_sibling(at, widget(at.text_input, "model.lora")).value
    widget(at.text_input, "model.lora").input("")
    assert api.list_runs().count == before

    # A cross-field check: the dataset task has no default levels (its levels field is free text).
    widget(at.selectbox, "task.name").select("dataset").run()
    button(at, "Submit run").click().run()
    assert_clean(at)
    levels = widget(at.text_input, "task.train_levels")
    assert "the dataset task needs the list of training levels" in next_sibling(at, levels).value
    assert api.list_runs().count == before


def test_the_tasks_options_are_fields_from_its_schema(dashboard_env: str, api) -> None:
    at = open_page(nav.LAUNCH)
    assert widget(at.selectbox, "task.options.long_prompts").value == "refuse"  # arithmetic's
    assert not [w for w in at.text_input if w.key.endswith("task.options")]  # no raw JSON field
    widget(at.selectbox, "task.name").select("countdown").run()
    assert_clean(at)
    target = widget(at.number_input, "task.options.max_target")
    assert target.value == 1000 and "intermediate value" in target.proto.help
    assert widget(at.selectbox, "task.options.rules").value == "e2h"
    template = widget(at.text_area, "task.options.user_template")
    assert template.value == TASKS["countdown"].options()["user_template"]
    # Levels and rewards are the task fields' (train/test levels, format/correctness reward), not options.
    drawn = [w.key for w in [*at.text_input, *at.number_input, *at.multiselect] if w.key]
    assert any(k.endswith("task.options.max_number") for k in drawn)
    assert not [k for k in drawn if k.endswith(("task.options.levels", "task.options.format_reward"))]

    # A check across options comes back as a 422 and lands under the option it names.
    before = api.list_runs().count
    widget(at.number_input, "task.options.max_number").set_value(50)
    widget(at.number_input, "task.options.max_target").set_value(20)
    widget(at.text_input, "run.tags").input("options")
    button(at, "Submit run").click().run()
    assert_clean(at)
    message = next_sibling(at, widget(at.number_input, "task.options.max_target"))
    assert message is not None and "must be >= max_number (50), got 20" in shown(message.value)
    assert api.list_runs().count == before

    widget(at.number_input, "task.options.max_target").set_value(500)
    widget(at.selectbox, "task.options.rules").select("seed")
    button(at, "Submit run").click().run()
    assert_clean(at)
    assert not at.error
    run = api.get(api.list_runs(tag="options").data[0].id)
    # Only the options that were changed are sent; the others keep the task's defaults.
    assert run.config["task"]["options"] == {"max_number": 50, "max_target": 500, "rules": "seed"}
    assert run.config["task"]["name"] == "countdown"


def test_clone_and_edit_starts_from_the_runs_config(dashboard_env: str, api, worker) -> None:
    source, _ = started_run(api, worker, {"algorithm": {"max_steps": 120}, "task": {"train_levels": [0, 1, 2]},
                                          "scheduler": {"name": "cosine"}}, steps=5, tags=["src"])
    at = open_page(nav.RUN, run=str(source["id"]))
    button(at, "Clone and edit").click().run()
    assert_clean(at)
    assert at.title[0].value == "Launch a run"
    # AppTest reruns the page it was switched to last, not one st.switch_page went to: follow it.
    at.switch_page(nav.LAUNCH).run()
    assert f"Editing a copy of run **#{source['id']}" in at.info[0].value
    assert widget(at.selectbox, "scheduler.name").value == "cosine"
    assert widget(at.multiselect, "task.train_levels").value == [0, 1, 2]
    assert widget(at.number_input, "algorithm.max_steps").value == 120
    assert widget(at.text_input, "run.tags").value == "src"
    widget(at.number_input, "algorithm.max_steps").set_value(150)
    button(at, "Submit run").click().run()
    assert_clean(at)
    clone = api.get(api.list_runs(tag="src").data[0].id)
    assert clone.id != source["id"] and clone.name == source["name"] + " (clone)"
    assert clone.max_steps == 150
    assert clone.config["task"]["train_levels"] == [0, 1, 2]
    assert clone.config["scheduler"]["name"] == "cosine"
    assert not at.info or "Editing a copy" not in at.info[0].value  # back to presets
