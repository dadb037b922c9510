"""Evaluate the built-in tiny model on every rank and write rank 0's results (run under accelerate launch)."""

import json
import sys

import torch
from accelerate import Accelerator

from e2h.config import compose
from e2h.evaluation import evaluate
from e2h.models import load_model, load_tokenizer
from e2h.train import build_datasets, build_task


def main(out: str, *overrides: str) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    config = compose(list(overrides))
    task = build_task(config)
    tokenizer = load_tokenizer(config.model.name_or_path)
    model = load_model(config.model.name_or_path, "float32").to(accelerator.device)
    _, rows = build_datasets(config, task, tokenizer)
    results = evaluate(model, tokenizer, task, rows, config.algorithm.max_completion_length, batch_size=16,
                       accelerator=accelerator)
    if accelerator.is_main_process:
        with open(out, "w") as f:
            json.dump({"results": results, "world": accelerator.num_processes}, f)
    # Leave together, as e2h.train does: a rank that exits with the gloo group still up can abort
    # ("terminate called without an active exception", SIGABRT), seen once in a loaded CI run.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
