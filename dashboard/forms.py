"""The launch form's logic, without Streamlit: JSON schema -> field specs, presets -> base config,
edited values -> the config to submit, and a 422's errors -> the fields they name.

A field's ``path`` is its dotted place in the RunConfig (``scheduler.params.min_prob``);
the run's own fields (name, priority, tags) live under ``run.``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from e2h.config import TASK_OPTIONS_FIRST_CLASS, SchedulerConfig, TaskConfig, dotted_get, dotted_set

DEFAULT_TASK = TaskConfig.model_fields["name"].default
DEFAULT_SCHEDULER = SchedulerConfig.model_fields["name"].default
PRESET_ORDER = ("model", "task", "algorithm", "scheduler")
# Fields the form shows with a widget of their own, not from the generic schema walk (task options
# and scheduler parameters come from the chosen task's and scheduler's own schemas).
STRUCTURAL = ("task.name", "scheduler.name", "scheduler.params", "task.options", "task.train_levels",
              "task.test_levels")


@dataclass
class FieldSpec:
    path: str
    label: str
    kind: str  # int | float | bool | enum | str | text (multi-line str) | json | levels
    default: Any = None
    help: str | None = None
    options: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- schema -----------------------------------------------------------------------------------


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        resolved = dict(defs.get(ref.removeprefix("#/$defs/"), {}))
        resolved.update({k: v for k, v in schema.items() if k != "$ref"})
        return resolved
    return schema


def _label(name: str, prop: dict) -> str:
    return prop.get("title") or name.replace("_", " ").capitalize()


def fields_from_schema(schema: dict, prefix: str = "", defs: dict | None = None, group: str = "",
                       skip: tuple[str, ...] = ()) -> list[FieldSpec]:
    """One FieldSpec per leaf of an object schema (pydantic's JSON schema), nested objects flattened.

    Integers and numbers become number inputs (inclusive bounds kept; exclusive ones are the
    server's to check), booleans checkboxes, ``enum``/``const`` choices selects, ``T | None``
    a nullable T, and anything else (lists, dicts, unions) a YAML/JSON text field.
    """
    defs = {**(defs or {}), **schema.get("$defs", {})}
    out: list[FieldSpec] = []
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        if path in skip:
            continue
        prop = _resolve(prop, defs)
        spec = _field(path, name, prop, defs, group)
        if spec is None:  # a nested object: its own fields, under a group named after it
            # Grouped by the property's name ("weights"), not its class title ("ComponentWeights").
            out += fields_from_schema(prop, f"{path}.", defs, group=name.replace("_", " ").capitalize(), skip=skip)
        else:
            out.append(spec)
    return out


def _field(path: str, name: str, prop: dict, defs: dict, group: str) -> FieldSpec | None:
    label, help_, default = _label(name, prop), prop.get("description"), prop.get("default")
    variants = [_resolve(v, defs) for v in prop.get("anyOf", [])]
    nullable = any(v.get("type") == "null" for v in variants)
    non_null = [v for v in variants if v.get("type") != "null"]
    if variants:
        if len(non_null) == 1 and _scalar_kind(non_null[0]) is not None:
            spec = _scalar(path, label, non_null[0], default, help_, group)
            spec.nullable = nullable
            return spec
        return FieldSpec(path, label, "json", default, help_, nullable=nullable, group=group)
    if prop.get("type") == "object" and prop.get("properties"):
        return None
    if _scalar_kind(prop) is None:
        return FieldSpec(path, label, "json", default, help_, group=group)
    return _scalar(path, label, prop, default, help_, group)


def _scalar_kind(prop: dict) -> str | None:
    if "enum" in prop:
        return "enum"
    if "const" in prop:
        return "enum"
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}.get(prop.get("type"))


def _scalar(path: str, label: str, prop: dict, default: Any, help_: str | None, group: str) -> FieldSpec:
    kind = _scalar_kind(prop) or "json"
    if kind == "str" and prop.get("format") == "multi-line":
        kind = "text"
    spec = FieldSpec(path, label, kind, default, help_, group=group)
    if kind == "enum":
        spec.options = list(prop["enum"]) if "enum" in prop else [prop["const"]]
    if kind in ("int", "float"):
        spec.minimum = prop.get("minimum")
        spec.maximum = prop.get("maximum")
    return spec


def task_option_fields(options_schema: dict) -> list[FieldSpec]:
    """The chosen task's options (GET /tasks ``options_schema``) as fields under ``task.options.``,
    less those a run sets with a task field of its own (levels, rewards)."""
    return fields_from_schema(options_schema, prefix="task.options.", group="Task options",
                              skip=tuple(f"task.options.{name}" for name in TASK_OPTIONS_FIRST_CLASS))


# -- dotted paths and presets -------------------------------------------------------------------

_MISSING = object()


get_path, set_path = dotted_get, dotted_set  # the RunConfig's dotted-key helpers


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base`` (dicts recursively, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def compose_presets(presets: dict[str, dict[str, dict]], chosen: dict[str, str | None]) -> dict:
    """The partial RunConfig the chosen presets make, merged model, task, algorithm, scheduler."""
    config: dict = {}
    for group in PRESET_ORDER:
        name = chosen.get(group)
        if name:
            config = deep_merge(config, presets.get(group, {}).get(name, {}))
    return config


def effective_base(base: dict, task_name: str, scheduler_name: str) -> dict:
    """``base`` with its task and scheduler sections dropped when the form picked another one:
    a preset's levels or parameters belong to the task or scheduler they were written for."""
    out = copy.deepcopy(base)
    if get_path(out, "task.name", DEFAULT_TASK) != task_name:
        out["task"] = {}
    if get_path(out, "scheduler.name", DEFAULT_SCHEDULER) != scheduler_name:
        out["scheduler"] = {}
    set_path(out, "task.name", task_name)
    set_path(out, "scheduler.name", scheduler_name)
    return out


def initial_value(spec: FieldSpec, base: dict) -> Any:
    value = get_path(base, spec.path, _MISSING)
    return spec.default if value is _MISSING else value


# -- values -> config ---------------------------------------------------------------------------


class FieldError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def to_text(value: Any) -> str:
    """How a json field shows a value: empty for None, JSON otherwise (YAML accepted back)."""
    return "" if value is None else json.dumps(value)


def parse_text(spec: FieldSpec, text: str) -> Any:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FieldError(spec.path, f"not valid JSON or YAML: {e}".splitlines()[0]) from None


def build_config(base: dict, specs: list[FieldSpec], values: dict[str, Any]) -> dict:
    """``base`` with every field whose value differs from what the form first showed.

    Unchanged fields stay as the base had them (or absent, so the server's default applies):
    the submitted config says only what the presets and the researcher chose.
    """
    config = copy.deepcopy(base)
    for spec in specs:
        if spec.path not in values:
            continue
        value = values[spec.path]
        if value != initial_value(spec, base):
            set_path(config, spec.path, value)
    return config


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


# -- 422 -> fields --------------------------------------------------------------------------------


def error_messages(detail: Any) -> list[tuple[str, str]]:
    """(field, message) pairs from a 422 ``detail``: config fields relative to the RunConfig,
    the run's own fields under ``run.``, anything unplaceable under ``""``."""
    if isinstance(detail, str):
        return [("", detail)]
    if not isinstance(detail, list):
        return [("", json.dumps(detail))]
    out = []
    for item in detail:
        if not isinstance(item, dict):
            out.append(("", str(item)))
            continue
        name = item.get("field")
        if not name:
            loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
            name = ".".join(loc)
        msg = str(item.get("msg", item)).removeprefix("Value error, ")
        if name.startswith("config."):
            out.append((name.removeprefix("config."), msg))
        elif name == "config":
            out.append(("", msg))
        elif name:
            out.append((f"run.{name}", msg))
        else:
            out.append(("", msg))
    return out


def place_errors(errors: list[tuple[str, str]], paths: list[str]) -> dict[str, list[str]]:
    """Each error under the form field it names: the exact path, else the longest field path that
    is a prefix of it (``task.options.path`` -> ``task.options``), else the nearest field under it,
    else ``""`` (shown above the form)."""
    placed: dict[str, list[str]] = {}
    ordered = sorted(paths, key=len, reverse=True)
    for name, msg in errors:
        target = ""
        if name in paths:
            target = name
        else:
            parts = name.split(".")
            # Drop list indices (tags.0 -> tags).
            trimmed = ".".join(p for p in parts if not p.isdigit())
            target = next((p for p in ordered if trimmed == p or trimmed.startswith(p + ".")), "")
            if not target and trimmed:
                target = next((p for p in paths if p.startswith(trimmed + ".")), "")
        placed.setdefault(target, []).append(msg)
    return placed
