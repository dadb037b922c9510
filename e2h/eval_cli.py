"""``e2h eval CHECKPOINT_OR_MODEL [overrides...] [--output FILE]``: E2H's ``mode=test``.

Evaluates a model per level on its task's test rows and writes ``test_results.json`` in E2H's
format: ``{"overall": {"accuracy", "support", ...}, "level_<L>": {...}}``, accuracy being the share
of greedy completions whose reward is above the format reward (E2H's rule). ``--samples K``
(K > 1) adds sampled figures at ``algorithm.temperature`` (``mean@K``, ``pass@K``, their mean reward)
under ``"sampled"`` in each entry; held-out levels carry ``"heldout": true``.

CHECKPOINT_OR_MODEL is a run's output dir, its ``final/`` or a ``checkpoint-N/`` (the run's
``config.json`` is read from there or the dir above), a LoRA adapter directory (its base model
is loaded and the adapter merged), any model directory or hub id, or ``builtin:tiny``; dotted
overrides and presets apply on top (``task=countdown2345 task.test_levels=[6]``). On a GPU with
vLLM installed generation uses vLLM (``--backend``), otherwise transformers, as training's
evaluation does; either way prompts hold exactly one BOS and generation stops at ``</answer>``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("e2h.eval")

CONFIG_FILE = "config.json"  # a run's config, as e2h.train writes it
RESULTS_FILE = "test_results.json"
ADAPTER_CONFIG = "adapter_config.json"


def find_run_config(checkpoint: str) -> Path | None:
    """The run config that trained ``checkpoint``: its dir's or its parent's ``config.json`` when that
    holds a RunConfig (a model's own config.json holds ``architectures``, not ``task``)."""
    path = Path(checkpoint)
    if not path.is_dir():
        return None
    for candidate in (path / CONFIG_FILE, path.parent / CONFIG_FILE):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "task" in data and "algorithm" in data:
                return candidate
    return None


def resolve_config(checkpoint: str, overrides: list[str], config_file: str | None = None):
    """The RunConfig to evaluate with: the run's (or ``config_file``), overrides on top, the model
    set to ``checkpoint``."""
    from e2h.config import compose, load_config_file

    found = Path(config_file) if config_file else find_run_config(checkpoint)
    base = load_config_file(found) if found else {}
    if found:
        logger.info("run config: %s", found)
    base.setdefault("model", {})
    base["model"]["name_or_path"] = checkpoint
    return compose(overrides, base=base)


def load_for_eval(checkpoint: str, config, with_model: bool = True) -> tuple[Any, Any, dict]:
    """(model or None, tokenizer, what was loaded): a full model, or a LoRA adapter merged into its base."""
    from e2h.models import load_model, load_tokenizer

    m = config.model
    adapter = Path(checkpoint) / ADAPTER_CONFIG
    if Path(checkpoint).is_dir() and adapter.is_file():
        base_name = _run_base_model(checkpoint) or json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_name:
            raise ValueError(f"{checkpoint}: a LoRA adapter without base_model_name_or_path; give the run's "
                             "config.json with --config")
        model = None
        if with_model:
            from peft import PeftModel

            model = load_model(base_name, m.dtype, m.trust_remote_code, m.attn_implementation)
            model = PeftModel.from_pretrained(model, checkpoint).merge_and_unload()
        has_tokenizer = (Path(checkpoint) / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(checkpoint if has_tokenizer else base_name, m.trust_remote_code)
        return model, tokenizer, {"checkpoint": checkpoint, "base_model": base_name, "adapter": True}
    model = load_model(checkpoint, m.dtype, m.trust_remote_code, m.attn_implementation) if with_model else None
    tokenizer = load_tokenizer(checkpoint, m.trust_remote_code)
    return model, tokenizer, {"checkpoint": checkpoint, "adapter": False}


def _run_base_model(checkpoint: str) -> str | None:
    found = find_run_config(checkpoint)
    if found is None:
        return None
    name = json.loads(found.read_text()).get("model", {}).get("name_or_path")
    return None if name in (None, checkpoint) else name


def test_rows(config, task, tokenizer) -> list[dict]:
    """The run's test rows (the same questions its final evaluation used)."""
    from e2h.tasks import build_dataset

    data = build_dataset(
        task,
        train_levels=config.task.train_levels,
        test_levels=config.task.test_levels,
        # generated tasks keep test questions apart by hash, whatever the training rows; a dataset with
        # its own test split drops the training questions, so those are read too
        train_size=config.task.train_size_per_level if task.separate_test_split else 0,
        test_size=config.task.test_size_per_level,
        seed=config.algorithm.seed,
        tokenizer=tokenizer,
        max_prompt_length=config.algorithm.max_prompt_length,
    )
    return data.test


def _vllm_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def evaluate_with_vllm(checkpoint: str, loaded: dict, config, task, rows: list[dict], num_samples: int,
                       temperature: float | None) -> dict:
    """E2H's vLLM generation (greedy, or ``num_samples`` at ``temperature``), scored like e2h.evaluation."""
    import torch
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from e2h.evaluation import ANSWER_END, summarise
    from e2h.models import resolve_model_path

    base = loaded.get("base_model") or checkpoint
    lora = loaded["adapter"]
    dtype = config.model.dtype if config.model.dtype != "float32" else "auto"
    llm = LLM(model=resolve_model_path(base), dtype=dtype, seed=config.algorithm.seed,
              tensor_parallel_size=max(1, torch.cuda.device_count()),
              max_model_len=(config.algorithm.max_prompt_length or 4096) + config.algorithm.max_completion_length,
              enable_lora=lora, max_lora_rank=max(64, config.model.lora.r if config.model.lora else 0),
              trust_remote_code=config.model.trust_remote_code)
    tokenizer = llm.get_tokenizer()
    params = SamplingParams(n=num_samples, temperature=temperature or 0.0,
                            max_tokens=config.algorithm.max_completion_length, min_tokens=1, seed=config.algorithm.seed,
                            stop=[ANSWER_END], include_stop_str_in_output=True)
    request = None
    if lora:
        from vllm.lora.request import LoRARequest

        request = LoRARequest("adapter", 1, checkpoint)
    # Token ids, tokenized as training does: exactly one BOS (vLLM would add one to a text prompt).
    prompts = [TokensPrompt(prompt_token_ids=tokenizer(r["prompt"])["input_ids"]) for r in rows]
    outputs = llm.generate(prompts, params, lora_request=request)
    texts = [[o.text for o in out.outputs] for out in outputs]
    columns = {key: [r[key] for r in rows] for key in rows[0] if key != "prompt"}
    per_sample = [task.reward([t[k] for t in texts], **columns) for k in range(num_samples)]
    rewards = {i: [float(per_sample[k][i]) for k in range(num_samples)] for i in range(len(rows))}
    return summarise(task, rows, rewards, num_samples)


def e2h_results(greedy: dict, sampled: dict | None, num_samples: int, temperature: float | None,
                heldout: set[int]) -> dict:
    """E2H's test_results.json: "overall" first, then "level_<L>" in level order."""
    out: dict[str, dict] = {}
    for key in ["overall"] + sorted((k for k in greedy if k != "overall"), key=lambda k: int(k.split("_")[1])):
        entry = dict(greedy[key])
        if key != "overall":
            entry["heldout"] = int(key.split("_")[1]) in heldout
        if sampled is not None:
            entry["sampled"] = {"samples": num_samples, "temperature": temperature,
                                **{k: v for k, v in sampled[key].items() if k not in ("accuracy", "support")}}
        out[key] = entry
    return out


def run_eval(checkpoint: str, overrides: list[str], output: str | None = None, config_file: str | None = None,
             num_samples: int = 1, batch_size: int = 64, backend: str = "auto") -> tuple[dict, Path]:
    """Evaluate ``checkpoint``; returns the results and the file they were written to."""
    from e2h.train import build_task

    if num_samples < 1:
        raise ValueError("--samples: give 1 (greedy only) or more")
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"--backend: {backend!r} is not auto, transformers or vllm")
    config = resolve_config(checkpoint, overrides, config_file)
    task = build_task(config)
    heldout = set(config.task.test_levels) - set(config.task.train_levels)
    temperature = config.algorithm.temperature if num_samples > 1 else None
    use_vllm = backend == "vllm" or (backend == "auto" and _vllm_available())
    if backend == "vllm" and not _vllm_available():
        raise ValueError("--backend: vllm needs a GPU and the vllm package; use --backend transformers")
    model, tokenizer, loaded = load_for_eval(checkpoint, config, with_model=not use_vllm)
    rows = test_rows(config, task, tokenizer)
    if not rows:
        raise ValueError("task.test_levels: no test rows to evaluate")
    if use_vllm:
        greedy = evaluate_with_vllm(checkpoint, loaded, config, task, rows, 1, None)
        sampled = (evaluate_with_vllm(checkpoint, loaded, config, task, rows, num_samples, temperature)
                   if num_samples > 1 else None)
    else:
        import torch

        from e2h.evaluation import evaluate

        if torch.cuda.is_available():
            model = model.to("cuda")
        max_new = config.algorithm.max_completion_length
        greedy = evaluate(model, tokenizer, task, rows, max_new, batch_size=batch_size)
        sampled = (evaluate(model, tokenizer, task, rows, max_new, batch_size=batch_size, num_samples=num_samples,
                            temperature=temperature) if num_samples > 1 else None)
    results = e2h_results(greedy, sampled, num_samples, temperature, heldout)
    target = Path(output) if output else (Path(checkpoint) if Path(checkpoint).is_dir() else Path(".")) / RESULTS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=4))
    return results, target


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="e2h eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run's output dir, final/, checkpoint-N/, a LoRA adapter, a model "
                                           "directory or hub id, or builtin:tiny")
    parser.add_argument("overrides", nargs="*", help="group=preset or dotted.key=value")
    parser.add_argument("--output", help=f"where to write the results (default: CHECKPOINT/{RESULTS_FILE})")
    parser.add_argument("--config", help="RunConfig JSON/YAML file (default: the run's config.json, if found)")
    parser.add_argument("--samples", type=int, default=1, help="K > 1 adds K samples at algorithm.temperature")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="auto", help="auto (vLLM on a GPU when installed), transformers, vllm")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results, target = run_eval(ns.checkpoint, ns.overrides, ns.output, ns.config, ns.samples, ns.batch_size,
                                   ns.backend)
    except ValueError as e:
        from e2h.config import describe_error

        sys.stderr.write(f"error: {describe_error(e)}\n")
        return 2
    sys.stdout.write(json.dumps(results["overall"]) + f"\nwritten to {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
