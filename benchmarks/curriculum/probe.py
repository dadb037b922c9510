"""Probe a model on the arithmetic ladder: per-level greedy and sampled accuracy, train vs test questions.

GRPO optimises the reward of *sampled* completions on *training* questions. The per-level
reward windows in ``snapshots.jsonl`` are that, but noisy (a few prompts per level per step,
and the policy moves while they are measured); the evaluation in ``evals.jsonl`` is greedy on
the test split (a handful of questions at level 0). This probe measures a fixed model on every
distinct question of each level, split by which side of ``build_dataset``'s partition it is on,
greedily and with ``--samples`` completions per question at ``--temperature``:

    python -m benchmarks.curriculum.probe builtin:tiny RUN_DIR/checkpoint-200 --levels 0,1,2

Prints one table row per (model, level): sampled and greedy accuracy, mean reward and the share of
sampled completions in the answer format.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def distinct_questions(task, level: int, limit: int, seed: int = 123) -> list[dict]:
    """Up to ``limit`` distinct questions of ``level`` (level 0 has only 100)."""
    seen: set[str] = set()
    rows: list[dict] = []
    for row in task.generate(level, limit * 4, seed=seed + level):
        key = task.question_key(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows[:limit]


def probe(model_path: str, levels: list[int], questions: int, samples: int, temperature: float,
          seed: int = 0) -> list[dict]:
    """One dict per level: accuracy and mean reward, greedy and sampled, on train and test questions."""
    import torch

    torch.manual_seed(seed)  # the same model and seed draw the same samples

    from e2h.models import load_model, load_tokenizer
    from e2h.tasks import get_task
    from e2h.tasks.data import DEFAULT_TEST_FRACTION, in_test_partition

    tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, "float32").eval()
    task = get_task("arithmetic")
    results = []
    for level in levels:
        rows = distinct_questions(task, level, questions)
        out = {"model": model_path, "level": level}
        for mode, n in (("greedy", 1), ("sampled", samples)):
            rewards: dict[str, list[float]] = {"train": [], "test": []}
            for start in range(0, len(rows), 64):
                chunk = rows[start : start + 64]
                enc = tokenizer([task.build_prompt(r, tokenizer) for r in chunk], return_tensors="pt",
                                padding=True, add_special_tokens=False)
                sampled = mode == "sampled"
                sampling = {"do_sample": True, "temperature": temperature} if sampled else {"do_sample": False}
                with torch.no_grad():
                    ids = model.generate(**enc, max_new_tokens=48, num_return_sequences=n,
                                         pad_token_id=tokenizer.pad_token_id, **sampling)
                texts = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for i, row in enumerate(chunk):
                    columns = {k: [row[k]] * n for k in row}
                    side = "test" if in_test_partition(task.question_key(row), DEFAULT_TEST_FRACTION) else "train"
                    rewards[side] += [float(r) for r in task.reward(texts[i * n : (i + 1) * n], **columns)]
            for side, values in rewards.items():
                correct = [r > task.format_reward + 1e-6 for r in values]
                formatted = [r > 1e-9 for r in values]  # a badly formatted completion earns exactly 0
                out[f"{mode}_{side}_accuracy"] = sum(correct) / len(values) if values else None
                out[f"{mode}_{side}_format"] = sum(formatted) / len(values) if values else None
                out[f"{mode}_{side}_reward"] = sum(values) / len(values) if values else None
                out[f"{mode}_{side}_n"] = len(values)
        results.append(out)
    return results


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: list[dict]) -> str:
    header = ["model", "level", "sampled acc (train)", "sampled reward (train)", "sampled format ok (train)",
              "greedy acc (train)", "greedy acc (test)", "n sampled (train/test)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        lines.append("| " + " | ".join([
            Path(r["model"]).name if "/" in r["model"] else r["model"], str(r["level"]),
            fmt(r["sampled_train_accuracy"]), fmt(r["sampled_train_reward"]), fmt(r["sampled_train_format"]),
            fmt(r["greedy_train_accuracy"]),
            fmt(r["greedy_test_accuracy"]), f"{r['sampled_train_n']}/{r['sampled_test_n']}",
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="builtin:tiny, a saved model dir or a run's checkpoint dir")
    parser.add_argument("--levels", default="0,1,2")
    parser.add_argument("--questions", type=int, default=120, help="distinct questions per level (at most)")
    parser.add_argument("--samples", type=int, default=8, help="sampled completions per question")
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    levels = [int(x) for x in args.levels.split(",")]
    results = []
    for model in args.models:
        results += probe(model, levels, args.questions, args.samples, args.temperature)
    print(table(results))


if __name__ == "__main__":
    main()
