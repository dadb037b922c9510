"""The built-in tiny model and model loading.

``builtin:tiny`` is a small Llama-style causal LM with a character-level tokenizer made
here (no download), warm-started with TRL's SFTTrainer on the arithmetic task's easy
levels so that GRPO has something to improve.

The warm start teaches the answer and the answer format, but on purpose not always both:
a share (``WARMSTART_PROSE_SHARE``) of its completions give the answer in prose ("The answer
is 7.") instead of the ``<answer>`` tags, which the reward scores 0. So the warmed model is
a sloppy student: it knows many easy answers and often fails to hand them in. Fixing that is
one skill shared by every question and level, which GRPO learns in a few hundred CPU steps;
the answers themselves are a table of facts that 200 steps revisit too rarely to improve
(docs/benchmarks.md, "Does GRPO make builtin:tiny better at the easy levels?"). The warmed checkpoint ships in
``e2h/assets/tiny`` and is loaded with ``from_pretrained`` like any hub model;
``e2h model build-tiny`` rebuilds it.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
TINY_DIR = Path(__file__).parent / "assets" / "tiny"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# Each message is its role token, its content and EOS; a generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
TINY_ARCH = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
    tie_word_embeddings=True,
    rope_theta=10000.0,
)


def build_char_tokenizer():
    """A character-level tokenizer over printable ASCII with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + ROLE_TOKENS
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised tiny Llama-style causal LM sized for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_ARCH,
    )
    return LlamaForCausalLM(config)


def resolve_model_path(name_or_path: str) -> str:
    """Map ``builtin:NAME`` to the shipped checkpoint; other names pass through unchanged."""
    if not name_or_path.startswith(BUILTIN_PREFIX):
        return name_or_path
    name = name_or_path[len(BUILTIN_PREFIX) :]
    if name != "tiny":
        raise ValueError(f"model.name_or_path: unknown built-in model {name_or_path!r}; only builtin:tiny exists")
    if not (TINY_DIR / "config.json").is_file():
        raise ValueError(
            f"the built-in tiny model is missing from {TINY_DIR}; rebuild it with `e2h model build-tiny`"
        )
    return str(TINY_DIR)


# What the hub accepts as a repository id (huggingface_hub's validate_repo_id): "name" or "owner/name".
_HUB_ID = re.compile(r"(?!.*(--|\.\.))[\w.-]{1,96}(/[\w.-]{1,96})?")


def local_model_path(name_or_path: str) -> Path | None:
    """The local path ``from_pretrained`` would read for ``name_or_path``, resolved (symlinks
    followed), or None for a built-in model or a hub id. Anything that names or looks like a
    path is local, whether it exists or not (a worker's policy decides whether it may be read)."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        return None
    path = Path(name_or_path).expanduser()
    if name_or_path.startswith(("/", ".", "~")) or path.exists() or not _HUB_ID.fullmatch(name_or_path):
        return path.resolve()
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(name_or_path: str, dtype: str = "auto", trust_remote_code: bool = False,
               attn_implementation: str = "sdpa"):
    """Load a causal LM the way any Hugging Face checkpoint is loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(name_or_path), dtype=torch_dtype, trust_remote_code=trust_remote_code,
        attn_implementation=attn_implementation,
    )


WARMSTART_STEPS = 800
WARMSTART_PROSE_SHARE = 0.5  # share of SFT completions answering in prose instead of <answer> tags
WARMSTART_LEVELS_FRACTION = 0.4  # SFT on the easiest 40% of the arithmetic ladder only


def warmstart_completion(answer: str, eos: str, prose: bool) -> str:
    """The SFT completion for ``answer``: its reasoning is the result itself, then the answer in
    ``<answer>`` tags, or in prose (a format the reward scores 0) when ``prose``."""
    handed_in = f"The answer is {answer}." if prose else f"<answer>{answer}</answer>"
    return f"{answer}</think>\n{handed_in}{eos}"


def warmstart_rows(tokenizer, n_per_level: int, seed: int) -> list[dict]:
    """SFT pairs on the arithmetic task's easy levels: the task's prompt and a completion with
    the gold answer, in prose for a ``WARMSTART_PROSE_SHARE`` of the rows."""
    import random

    from e2h.tasks import get_task
    from e2h.tasks.data import DEFAULT_TEST_FRACTION, in_test_partition

    rng = random.Random(seed)
    task = get_task("arithmetic")
    levels = list(task.levels)
    easy = levels[: max(1, round(len(levels) * WARMSTART_LEVELS_FRACTION))]
    rows = []
    for level in easy:
        for row in task.generate(level, n_per_level, seed=seed + 7919 * level):
            if in_test_partition(task.question_key(row), DEFAULT_TEST_FRACTION):
                continue  # never train on a question a run may be evaluated on
            prose = rng.random() < WARMSTART_PROSE_SHARE
            rows.append(
                {
                    "prompt": task.build_prompt(row, tokenizer),
                    "completion": warmstart_completion(str(row["solution"]), tokenizer.eos_token, prose),
                }
            )
    return rows


def build_and_warm_start(
    output_dir: str | Path, steps: int = WARMSTART_STEPS, seed: int = 0, progress: bool = False
) -> Path:
    """Build the tokenizer and tiny model, warm-start it with TRL's SFTTrainer, save both.
    ``progress`` shows the trainer's progress bar (the CLI's ``e2h model build-tiny`` does)."""
    import tempfile

    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    data = Dataset.from_list(warmstart_rows(tokenizer, n_per_level=2000, seed=seed))
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=32,
            learning_rate=3e-3,
            lr_scheduler_type="cosine",
            warmup_steps=min(50, steps // 10),
            logging_steps=100,
            disable_tqdm=not progress,
            save_strategy="no",
            report_to="none",
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
            completion_only_loss=True,
            max_length=tokenizer.model_max_length if tokenizer.model_max_length < 10_000 else 256,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info("tiny model saved to %s after %d SFT steps", output_dir, steps)
    return output_dir


def build_small_qwen2(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised small Qwen2-architecture model and its tokenizer to ``path``.

    The GPU path (LoRA on q_proj/v_proj, gradient checkpointing, bf16, vLLM) is written for
    Qwen2.5 and Llama 3.2; this model has their architecture at a size a CPU trains in seconds,
    built here so tests and the GPU smoke script need no download.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
