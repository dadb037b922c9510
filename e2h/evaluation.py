"""Per-level evaluation of a model on a task's test rows, on one process or all of them.

Every rank takes part: the questions are sorted by prompt length (longest first, so a batch
that does not fit shows at once and padding stays small), dealt out round-robin, generated
on each rank and gathered, so no GPU idles while rank 0 evaluates and a sharded model
(DeepSpeed ZeRO-3, FSDP) never waits on collectives only some ranks join. Generation stops
at ``</answer>``, where a well-formed completion ends. Greedy decoding gives the same
results on any number of processes; ``num_samples > 1`` at a temperature adds sampled
accuracy (mean@k) and pass@k.
"""

from __future__ import annotations

import contextlib
from typing import Any

ANSWER_END = "</answer>"


def _shard(n: int, rank: int, world: int) -> list[int]:
    """Row positions of ``rank``, padded with its last row so every rank runs as many batches."""
    mine = list(range(rank, n, world))
    per_rank = -(-n // world)
    return mine + [mine[-1] if mine else 0] * (per_rank - len(mine))


def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int, num_samples: int,
              temperature: float | None, synced: bool) -> list[list[str]]:
    import torch

    device = next(model.parameters()).device
    # With the special tokens, as TRL tokenizes prompts in training: prompts hold no BOS the tokenizer adds itself
    # (e2h.tasks.base.strip_added_bos), so every chat template gets exactly one.
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=num_samples,
                             pad_token_id=tokenizer.pad_token_id, stop_strings=[ANSWER_END],
                             tokenizer=tokenizer, synced_gpus=synced, **sampling)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]


def evaluate(model, tokenizer, task, rows: list[dict], max_new_tokens: int, batch_size: int = 64,
             accelerator=None, num_samples: int = 1, temperature: float | None = None) -> dict:
    """Per-level accuracy and mean reward; accuracy = reward above the format reward.

    With ``accelerator`` (several processes) every rank must call this with the same rows;
    all of them get the same results. ``model`` is the unwrapped model; under ZeRO-3 call it
    inside TRL's ``unwrap_model_for_generation`` (what :func:`evaluate_in_trainer` does).
    """
    if num_samples > 1 and not temperature:
        raise ValueError("num_samples > 1 needs a sampling temperature (greedy samples are all the same)")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    synced = False
    if accelerator is not None and world > 1:
        from trl.distributed import DistributedBackend

        synced = DistributedBackend(accelerator).is_fsdp  # FSDP's forward is a collective
    lengths = [len(tokenizer(r["prompt"])["input_ids"]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (-lengths[i], i))
    positions = _shard(len(order), rank, world)
    was_training = model.training
    model.eval()
    scored: list[tuple[int, list[float]]] = []
    try:
        for start in range(0, len(positions), batch_size):
            chunk = [order[p] for p in positions[start:start + batch_size]]
            picked = [rows[i] for i in chunk]
            samples = _generate(model, tokenizer, [r["prompt"] for r in picked], max_new_tokens, num_samples,
                                temperature, synced)
            columns = {key: [r[key] for r in picked] for key in picked[0] if key != "prompt"}
            per_sample = [task.reward([s[k] for s in samples], **columns) for k in range(num_samples)]
            scored += [(i, [float(r[j]) for r in per_sample]) for j, i in enumerate(chunk)]
    finally:
        model.train(was_training)
    if accelerator is not None and world > 1:
        from accelerate.utils import gather_object

        scored = gather_object(scored)
    # Padding repeats a rank's last row; greedy gives it the same rewards again.
    results = summarise(task, rows, dict(scored), num_samples)
    return results


def summarise(task, rows: list[dict], rewards: dict[int, list[float]], num_samples: int) -> dict:
    """Per-level and overall figures from each row's sampled rewards."""
    threshold = task.format_reward + 1e-6
    by_level: dict[int, list[list[float]]] = {}
    for i, row in enumerate(rows):
        by_level.setdefault(int(row["level"]), []).append(rewards[i])
    results: dict[str, dict] = {}
    everything: list[list[float]] = []
    for level in sorted(by_level):
        results[f"level_{level}"] = _figures(by_level[level], threshold, num_samples)
        everything += by_level[level]
    results["overall"] = _figures(everything, threshold, num_samples)
    return results


def _figures(per_row: list[list[float]], threshold: float, num_samples: int) -> dict:
    n = max(1, len(per_row))
    first = [r[0] for r in per_row]
    figures = {
        "accuracy": sum(x > threshold for x in first) / n,
        "reward_mean": sum(first) / n,
        "support": len(per_row),
    }
    if num_samples > 1:
        figures[f"mean@{num_samples}"] = sum(sum(x > threshold for x in r) / len(r) for r in per_row) / n
        figures[f"pass@{num_samples}"] = sum(any(x > threshold for x in r) for r in per_row) / n
        figures["reward_mean"] = sum(sum(r) / len(r) for r in per_row) / n
    return figures


def evaluate_in_trainer(trainer, task, rows: list[dict], max_new_tokens: int, **kwargs: Any) -> dict:
    """:func:`evaluate` on every rank of a running trainer, gathering sharded weights if needed."""
    from trl.models.utils import unwrap_model_for_generation

    accelerator = trainer.accelerator
    context = contextlib.nullcontext(accelerator.unwrap_model(trainer.model))
    if accelerator.num_processes > 1:
        context = unwrap_model_for_generation(trainer.model_wrapped, accelerator)
    with context as model:
        return evaluate(model, trainer.processing_class, task, rows, max_new_tokens,
                        accelerator=accelerator, **kwargs)
