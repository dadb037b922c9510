"""GPU smoke check: the GPU path end to end on one machine, in under 10 minutes on one GPU.

    bash scripts/gpu_smoke.sh            # or: .venv/bin/python scripts/gpu_smoke.py [--steps 20]

Each case trains through `e2h train` (the launch plan: devices, vLLM server, accelerate) and
prints s/step, peak GPU memory and tokens/s read from the run's snapshots:
- builtin:tiny on CUDA;
- a small Qwen2-architecture model built locally, LoRA r=32 on q_proj/v_proj, bf16, gradient checkpointing;
- the same with vLLM colocated, and with a managed vLLM server (when vLLM is installed);
- 2 DDP processes (when 2 GPUs are visible).
Record the figures in docs/benchmarks.md ("GPU smoke").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cases(qwen2: Path, steps: int, gpus: int) -> list[tuple[str, list[str]]]:
    common = [f"algorithm.max_steps={steps}", "algorithm.save_steps=1000", "algorithm.eval_steps=1000",
              "scheduler=balanced", "task=arithmetic", "task.test_size_per_level=8"]
    small = [f"model.name_or_path={qwen2}", "model.dtype=bfloat16",
             "model.lora={r: 32, alpha: 64, dropout: 0.1, target_modules: [q_proj, v_proj]}",
             "algorithm.bf16=true", "algorithm.gradient_checkpointing=true"]
    out = [("tiny, 1 GPU", ["model=tiny", *common]),
           ("qwen2-small LoRA bf16 GC", [*small, *common])]
    if importlib.util.find_spec("vllm") is not None:
        out.append(("qwen2-small + vLLM colocate", [*small, *common, "algorithm.use_vllm=true",
                                                   "algorithm.vllm_mode=colocate"]))
        if gpus >= 2:
            out.append(("qwen2-small + vLLM server", [*small, *common, "algorithm.use_vllm=true",
                                                     "algorithm.vllm_mode=server"]))
    if gpus >= 2:
        out.append(("tiny, 2 processes DDP", ["model=tiny", *common, "algorithm.num_processes=2"]))
    return out


def figures(out: Path) -> dict:
    from e2h.outputs import SNAPSHOTS_FILE, read_jsonl

    snaps = read_jsonl(out / SNAPSHOTS_FILE)
    times = [s["time"] for s in snaps]
    peak = [s["metrics"].get("gpu/mem_allocated_peak_gib") for s in snaps]
    tps = [s["metrics"].get("throughput/tokens_per_second") for s in snaps[1:]]
    tps = [x for x in tps if x]
    return {
        "steps": len(snaps),
        "s_per_step": (times[-1] - times[0]) / max(1, len(times) - 1),
        "peak_gib": max((p for p in peak if p is not None), default=None),
        "tokens_per_s": sum(tps) / len(tps) if tps else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible: this check needs a GPU machine", file=sys.stderr)
        return 2
    from e2h.models import build_small_qwen2

    gpus = torch.cuda.device_count()
    print(f"{gpus} GPU(s): {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="e2h-gpu-smoke-"))
    qwen2 = build_small_qwen2(root / "qwen2-small")
    failed = 0
    for name, overrides in cases(qwen2, args.steps, gpus):
        out = root / name.replace(" ", "_").replace(",", "").replace("+", "")
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "e2h.cli", "train", *overrides, "--output-dir", str(out)],
                              capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            failed += 1
            print(f"FAIL {name} ({wall:.0f} s):\n{proc.stderr[-3000:]}", flush=True)
            continue
        f = figures(out)
        print(f"ok   {name}: {f['steps']} steps, {f['s_per_step']:.3f} s/step, peak {f['peak_gib']} GiB, "
              f"{f['tokens_per_s'] or 0:.0f} tokens/s, wall {wall:.0f} s", flush=True)
    print(f"outputs in {root}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
