"""Launch: presets, then every field (task options and scheduler parameters from their JSON schemas); POST /runs."""

from __future__ import annotations

import functools

import streamlit as st

from dashboard import forms, nav, state, widgets
from dashboard.forms import FieldSpec
from dashboard.text import plain
from e2h.client import APIError, ServerUnavailable, ValidationFailed
from e2h.config import RunConfig

DEFAULT_PRESETS = {"model": "tiny", "task": "arithmetic", "algorithm": "grpo", "scheduler": "variance_regularized"}
NONE = "(none)"
ERRORS_KEY = "launch_errors"
SECTIONS = ("Run", "Model", "Task", "Algorithm", "Scheduler")


@functools.cache
def config_fields() -> list[FieldSpec]:
    return forms.fields_from_schema(RunConfig.model_json_schema(), skip=forms.STRUCTURAL)


def run_fields(default_name: str) -> list[FieldSpec]:
    return [
        FieldSpec("run.name", "Run name", "str", None, "Shown in the runs table.", nullable=True, group="Run",
                  extra={"placeholder": default_name}),
        FieldSpec("run.priority", "Priority", "int", 0, "Higher runs first; FIFO within a priority.", group="Run",
                  minimum=-1_000_000, maximum=1_000_000),
        FieldSpec("run.tags", "Tags", "str", "", "Comma-separated, for filtering the runs table.", group="Run"),
    ]


def task_fields(task: dict | None) -> list[FieldSpec]:
    available = (task or {}).get("available_levels") or []
    kind = "levels" if available else "json"
    return [
        FieldSpec("task.train_levels", "Training levels", kind, (task or {}).get("levels") or None,
                  "Levels trained on, easiest first: scheduler level i is the i-th.", options=available,
                  nullable=True, group="Task"),
        FieldSpec("task.test_levels", "Evaluation levels", kind, (task or {}).get("test_levels") or None,
                  "Levels evaluated; those not trained on are held out.", options=available, nullable=True,
                  group="Task"),
    ]


def section_of(spec: FieldSpec) -> str:
    head = spec.path.split(".")[0]
    return {"run": "Run", "model": "Model", "task": "Task", "algorithm": "Algorithm"}.get(head, "Scheduler")


st.title("Launch a run")
state.show_flash()
last = st.session_state.get("last_submitted")
if last:
    st.page_link(nav.RUN, label=f"Open run #{last['id']}", icon=":material/monitoring:",
                 query_params={"run": str(last["id"])})
url = state.server_url()
with state.server_errors():
    schedulers = {s["name"]: s for s in state.schedulers(url)}
    tasks = {t["name"]: t for t in state.tasks(url)}
    presets = state.presets(url)

# -- where the form starts: presets, or a copy of a run --------------------------------------
source = st.session_state.get(nav.CLONE_KEY)
if source:
    left, right = st.columns([4, 1])
    left.info(f"Editing a copy of run **#{source['id']}**: change what you need and submit; "
              "the original is untouched.", icon=":material/content_copy:")
    if right.button("Start from presets instead", key="clone.drop"):
        st.session_state.pop(nav.CLONE_KEY, None)
        st.rerun()
    base = source["config"]
    base_id = f"clone{source['id']}"
else:
    st.caption("Pick presets (the seed's config groups), then edit any field below.")
    cols = st.columns(len(forms.PRESET_ORDER))
    chosen = {}
    for col, group in zip(cols, forms.PRESET_ORDER, strict=True):
        names = [NONE, *sorted(presets.get(group, {}))]
        default = DEFAULT_PRESETS[group] if DEFAULT_PRESETS[group] in names else NONE
        pick = col.selectbox(f"{group.capitalize()} preset", names, index=names.index(default), key=f"preset.{group}")
        chosen[group] = None if pick == NONE else pick
    base = forms.compose_presets(presets, chosen)
    base_id = "p:" + ":".join(chosen[g] or "-" for g in forms.PRESET_ORDER)

st.markdown("**This run's task and scheduler**")
st.caption("A preset above only fills in the form; the task and scheduler chosen here are what the run uses.")
left, right = st.columns(2)
task_names = list(tasks)
base_task = forms.get_path(base, "task.name", forms.DEFAULT_TASK)
task_name = left.selectbox("Task", task_names, index=task_names.index(base_task) if base_task in task_names else 0,
                           key=f"{base_id}:task.name", help="What the model is trained on (GET /tasks).")
left.caption(plain(tasks[task_name]["description"]))
sched_names = list(schedulers)
base_sched = forms.get_path(base, "scheduler.name", forms.DEFAULT_SCHEDULER)
scheduler_name = right.selectbox(
    "Scheduler", sched_names, index=sched_names.index(base_sched) if base_sched in sched_names else 0,
    key=f"{base_id}:scheduler.name", help="How the curriculum samples levels (GET /schedulers).")
right.caption(plain(schedulers[scheduler_name]["description"]))

# -- the fields --------------------------------------------------------------------------------
eff = forms.effective_base(base, task_name, scheduler_name)
task = tasks[task_name]
specs = run_fields(source["name"] + " (clone)" if source else "default: from the config") + task_fields(task)
specs += forms.task_option_fields(task.get("options_schema") or {})
specs += config_fields()
specs += forms.fields_from_schema(schedulers[scheduler_name]["params_schema"], prefix="scheduler.params.",
                                  group="Scheduler")
for spec in specs:
    if spec.path in ("task.format_reward", "task.correctness_reward"):
        spec.extra["placeholder"] = f"task default: {task.get(spec.path.split('.')[1])}"
initial = {spec.path: forms.initial_value(spec, eff) for spec in specs}
if source:
    initial["run.priority"] = source.get("priority", 0)
    initial["run.tags"] = ", ".join(source.get("tags") or [])
form_id = f"{base_id}:{task_name}:{scheduler_name}"


def key_of(spec: FieldSpec) -> str:
    return f"{form_id}:{spec.path}"


stored = st.session_state.get(ERRORS_KEY)
errors: dict[str, list[str]] = stored["placed"] if stored and stored["form"] == form_id else {}
if errors:
    count = sum(len(v) for v in errors.values())
    st.error(f"The server rejected this config ({count} problem{'s' * (count != 1)}); see the marked fields.",
             icon=":material/error:")
    for message in errors.get("", []):
        st.error(plain(message))

values: dict = {}
problems: list[forms.FieldError] = []
with st.form(f"launch:{form_id}"):
    for title in SECTIONS:
        chunk = [s for s in specs if section_of(s) == title]
        marked = any(s.path in errors for s in chunk)
        with st.expander(title, expanded=marked or title in ("Run", "Task", "Scheduler")):
            if title == "Scheduler":
                st.caption(f"Parameters of **{plain(scheduler_name)}**, with their defaults (from its JSON schema).")
            if not chunk:
                st.caption("This scheduler has no parameters.")
            groups: dict[str, list[FieldSpec]] = {}
            for spec in chunk:
                groups.setdefault(spec.group, []).append(spec)
            for group, group_specs in groups.items():
                if group and group not in SECTIONS:
                    st.markdown(f"**{plain(group)}**")
                got, bad = widgets.section(group_specs, initial, key_of, errors)
                values.update(got)
                problems += bad
    submitted = st.form_submit_button("Submit run", type="primary", icon=":material/rocket_launch:")

if submitted and not problems:
    config_specs = [s for s in specs if not s.path.startswith("run.")]
    config = forms.build_config(eff, config_specs, values)
    name = values.get("run.name") or (source["name"] + " (clone)" if source else None)
    try:
        run = state.submit(config, name=name, priority=int(values.get("run.priority") or 0),
                           tags=forms.split_tags(values.get("run.tags") or ""))
    except ValidationFailed as e:
        # Errors naming no field of the form (task.name, an unknown parameter) go above it.
        placed = forms.place_errors(forms.error_messages(e.detail), [s.path for s in specs])
        st.session_state[ERRORS_KEY] = {"form": form_id, "placed": placed}
        st.rerun()
    except ServerUnavailable as e:
        st.error(f"Not submitted: {state.describe(e)} Your edits are kept; submit again when it is back.",
                 icon=":material/cloud_off:")
    except APIError as e:  # e.g. 401: the server wants E2H_API_TOKEN for writes
        st.error(f"Not submitted ({e.status_code}): {plain(e.detail)}", icon=":material/error:")
    else:
        st.session_state.pop(ERRORS_KEY, None)
        st.session_state.pop(nav.CLONE_KEY, None)
        state.forget_runs()
        st.session_state["last_submitted"] = run
        state.flash(f"Run #{run['id']} queued.")
        st.rerun()

