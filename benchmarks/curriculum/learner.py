"""A simulated GRPO learner on a difficulty ladder: seconds per run, no model.

Levels 0..K-1 are trained; level K is held out (never sampled, only evaluated). Each
level j has a latent skill s_j and succeeds with probability sigmoid(s_j - d_j), where
the difficulty d_j = d_0 + gap * j grows along the ladder ("steep" = large gap).

One step, exactly as the trainer does it:

1. ``p = scheduler.probs(step)``; each of the ``prompts`` slots draws its level i.i.d.
   from ``p`` (as ``TaskSampler.draw_batch``).
2. Each prompt gets ``G`` completions, reward 1 with the level's success probability.
3. ``scheduler.update(step, levels, rewards)`` with levels/rewards in TRL order
   (consecutive blocks of G entries are one prompt's group).
4. Learning: GRPO's advantage is (r - mean)/std within a group, so a group whose G
   rewards are all equal contributes nothing. For a binary reward and a success logit z,
   sum_k A_k d log pi(r_k)/dz = G * std(group) with that normalisation, so a group on
   level i moves skill by ``lr * std(group) / prompts`` (the loss is averaged over the
   batch, so zero-advantage groups dilute the step). Transfer: the same update reaches
   level j scaled by ``transfer ** |i - j|`` (the held-out level K only learns this way).
5. Forgetting: every skill relaxes toward its initial value,
   ``s <- s0 + (1 - forgetting) (s - s0)``, so what is not trained (directly or by
   transfer) decays.

Each seed is its own task instance: the difficulties get N(0, difficulty_jitter) noise (then
sorted, so the ladder still runs easy to hard and the held-out level stays the hardest) and the
learning rate a log-normal factor exp(N(0, lr_jitter)). The same seed gives every schedule the
same task, so schedules can be compared seed by seed (paired).

Evaluation uses each level's exact success probability (an infinite test set), so the
spread across seeds is training noise only.

Effects a researcher meets that the ladder above lacks (each off by default; the defaults reproduce
the issue-9 learner bit for bit):

- ``mastered_cost``: every prompt drawn from a mastered level (success probability >= ``mastery``,
  0.9; the trivial level always) costs every skill, the held-out one included,
  ``lr * mastered_cost / prompts``: drilling solved tasks over-fits and invites reward hacking
  (the E2H paper's reason to fade easy tasks out).
- ``trivial_level`` / ``unlearnable_level``: an extra level the scheduler sees, outside the ladder
  (no transfer to or from it), always solved (label 0) or never solved (the top label).
- ``partial_reward``: the reward is 0.1 format + 0.9 correctness, as the tasks score; a correct
  completion has the format, a wrong one with probability ``format_rate``. ``reward_noise``: the
  correctness in the reward is flipped with this probability. Learning follows the true
  correctness: a group moves its level's skill by ``lr * mean_k(A_k c_k) / prompts`` with GRPO's
  advantage A_k = (r_k - mean r)/std r and c_k in {0, 1} (for r = c this is std(group), as above),
  so format-only or noise-only variance teaches nothing, or the wrong thing.
- ``permute_levels``: per seed, the training levels' labels are shuffled, so difficulty is not
  monotone in the level number (the held-out level stays the hardest rung).
- ``learned_format``: the answer format is a skill too, as on the tiny LM. Rung j starts formatting
  with probability sigmoid(logit(``format_start``) - ``format_gap`` j) (the harder the rung, the
  rarer the format) and a completion is correct only when it is formatted and solved. The reward is
  0.1 format + 0.9 correctness; a group pushes its rung's format logit by ``lr * mean_k(A_k f_k) /
  prompts`` (f_k: formatted) and its skill as above, the format reaching rung j scaled by
  ``format_transfer ** |i - j|`` (the format is shared across rungs; the held-out rung learns it only
  this way). Format-only variance therefore teaches the format, and a rung whose completions are never
  formatted teaches no skill. Forgetting relaxes the format like a skill. It replaces
  ``partial_reward`` and ``format_rate``; ``reward_noise`` flips the correctness of formatted
  completions only (an unformatted answer cannot be scored correct).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from e2h.schedulers import Scheduler, make_scheduler

__all__ = [
    "SETTINGS",
    "RunResult",
    "Setting",
    "group_signal",
    "grpo_signal",
    "level_rungs",
    "simulate",
    "success_probs",
]


@dataclass(frozen=True)
class Setting:
    """One simulated task. ``num_levels`` counts training levels; the held-out level is one more."""

    name: str
    transfer: float
    forgetting: float
    gap: float
    num_levels: int = 4
    d0: float = -1.0
    lr: float = 0.07
    prompts: int = 16
    generations: int = 8
    total_steps: int = 400
    threshold: float = 0.5
    difficulty_jitter: float = 0.3
    lr_jitter: float = 0.25
    mastered_cost: float = 0.0
    mastery: float = 0.9
    trivial_level: bool = False
    unlearnable_level: bool = False
    partial_reward: bool = False
    format_rate: float = 0.5
    reward_noise: float = 0.0
    permute_levels: bool = False
    learned_format: bool = False
    format_start: float = 0.5
    format_gap: float = 1.0
    format_transfer: float = 0.8

    @property
    def scheduled_levels(self) -> int:
        """Levels the scheduler sees: the trained ladder plus the trivial and unlearnable extras."""
        return self.num_levels + int(self.trivial_level) + int(self.unlearnable_level)

    @property
    def difficulty(self) -> np.ndarray:
        return self.d0 + self.gap * np.arange(self.num_levels + 1)

    def describe(self) -> dict:
        return asdict(self)


TRANSFER = {"weak": 0.3, "strong": 0.7}
FORGETTING = {"noforget": 0.0, "forget": 0.005}
GAP = {"steep": 1.25, "flat": 0.6}


def _settings() -> dict[str, Setting]:
    out = {}
    for tname, transfer in TRANSFER.items():
        for fname, forgetting in FORGETTING.items():
            for dname, gap in GAP.items():
                name = f"{tname}-{fname}-{dname}"
                out[name] = Setting(name=name, transfer=transfer, forgetting=forgetting, gap=gap)
    return out


#: The eight benchmark settings: weak/strong transfer x with/without forgetting x steep/flat difficulty.
SETTINGS: dict[str, Setting] = _settings()


def success_probs(skill: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(skill - difficulty)))


def group_signal(rewards: np.ndarray) -> np.ndarray:
    """Learning signal per group (rows of ``rewards``): the group's reward std; 0 when all rewards are equal."""
    return rewards.std(axis=1)


def grpo_signal(rewards: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per group: mean_k A_k c_k, GRPO's normalised advantage times the true correctness.

    It is the push on the success logit; it equals ``group_signal`` when the reward is the
    correctness, and it is 0 when all rewards agree or when no completion differs in correctness.
    """
    std = rewards.std(axis=1, keepdims=True)
    adv = np.divide(rewards - rewards.mean(axis=1, keepdims=True), std, out=np.zeros_like(rewards), where=std > 0)
    return (adv * correct).mean(axis=1)


TRIVIAL, UNLEARNABLE = -2, -1


def level_rungs(setting: Setting, rng: np.random.Generator | None = None) -> np.ndarray:
    """The ladder rung behind each scheduler level (TRIVIAL / UNLEARNABLE for the extras)."""
    rungs = np.arange(setting.num_levels)
    if setting.permute_levels:
        if rng is None:
            raise ValueError("permute_levels needs a random generator")
        rungs = rng.permutation(rungs)
    parts = [[TRIVIAL]] if setting.trivial_level else []
    parts += [rungs.tolist()] + ([[UNLEARNABLE]] if setting.unlearnable_level else [])
    return np.array([r for part in parts for r in part], dtype=np.int64)


@dataclass
class RunResult:
    setting: str
    schedule: str
    seed: int
    accuracy: np.ndarray  # (total_steps + 1, K + 1): success probability per level before each step and at the end
    level_share: np.ndarray  # (total_steps, levels the scheduler sees): fraction of each step's prompts per level
    learning_groups: int = 0  # groups with differing rewards (the ones GRPO learns from)
    mastered_prompts: int = 0  # prompts drawn from a mastered level (counted when mastered_cost > 0)
    extra: dict = field(default_factory=dict)

    @property
    def heldout_curve(self) -> np.ndarray:
        """Held-out accuracy before each step and at the end (T + 1 values)."""
        return self.accuracy[:, -1]

    @property
    def heldout_final(self) -> float:
        return float(self.heldout_curve[-1])

    def steps_to(self, level: int, threshold: float) -> int | None:
        """First step after which ``level`` succeeds with probability >= threshold (None: never)."""
        hit = np.nonzero(self.accuracy[:, level] >= threshold)[0]
        return int(hit[0]) if hit.size else None


SchedulerFactory = Callable[[Setting], Scheduler]


def factory(name: str, **params) -> SchedulerFactory:
    """A factory building ``make_scheduler(name, ...)`` for a setting."""

    def build(setting: Setting) -> Scheduler:
        return make_scheduler(name, setting.scheduled_levels, setting.total_steps, setting.generations, **params)

    return build


def simulate(setting: Setting, make: SchedulerFactory, seed: int, schedule: str = "", noise: int = 0) -> RunResult:
    """Train the simulated learner for ``setting.total_steps`` steps under the scheduler ``make`` builds.

    ``noise`` picks the training luck (level draws, rewards, format and label noise) for the task
    instance of ``seed``: 0 is the benchmark's own; another value gives the same task (difficulties,
    learning rate, level labels) with independent luck, as a rerun of the same training would.
    """
    if noise < 0:
        raise ValueError(f"noise={noise}: a training-luck draw is a number >= 0 (0 = the benchmark's own)")
    k, g, b = setting.num_levels, setting.generations, setting.prompts
    kv = setting.scheduled_levels
    # Separate streams for level draws, rewards and the task instance: every schedule gets the
    # same task for a seed (so differences can be paired) and comparable luck. The fourth stream
    # (format and noise draws) leaves the first three as they were before it existed.
    streams = np.random.SeedSequence(seed).spawn(4)
    if noise:
        luck = np.random.SeedSequence([seed, noise]).spawn(4)
        streams = [luck[0], luck[1], streams[2], luck[3]]
    level_rng, reward_rng, task_rng, extra_rng = (np.random.default_rng(s) for s in streams)
    difficulty = np.sort(setting.difficulty + task_rng.normal(0.0, setting.difficulty_jitter, k + 1))
    lr = setting.lr * float(np.exp(task_rng.normal(0.0, setting.lr_jitter)))
    rungs = level_rungs(setting, task_rng)
    on_ladder = rungs >= 0
    plain = not (setting.partial_reward or setting.reward_noise or setting.learned_format)
    scheduler = make(setting)
    skill0 = np.zeros(k + 1)
    skill = skill0.copy()
    idx = np.arange(k + 1)
    kernel = setting.transfer ** np.abs(np.arange(k)[:, None] - idx[None, :])  # (K, K+1)
    if setting.learned_format:
        start = np.log(setting.format_start / (1.0 - setting.format_start))
        fmt0 = start - setting.format_gap * idx  # format logit per rung, the held-out rung last
        fmt_logit = fmt0.copy()
        fmt_kernel = setting.format_transfer ** np.abs(np.arange(k)[:, None] - idx[None, :])
        extra_p = (rungs == TRIVIAL).astype(float)  # the extras: always / never formatted and solved
    accuracy = np.empty((setting.total_steps + 1, k + 1))
    share = np.empty((setting.total_steps, kv))
    learning_groups = mastered_prompts = 0
    for step in range(setting.total_steps):
        solve = success_probs(skill, difficulty)
        acc = solve * success_probs(fmt_logit, 0.0) if setting.learned_format else solve
        accuracy[step] = acc
        p_level = np.where(on_ladder, acc[np.maximum(rungs, 0)], (rungs == TRIVIAL).astype(float))
        p = scheduler.probs(step)
        levels = level_rng.choice(kv, size=b, p=p)
        if setting.learned_format:
            p_solve = np.where(on_ladder, solve[np.maximum(rungs, 0)], extra_p)
            p_fmt = np.where(on_ladder, success_probs(fmt_logit, 0.0)[np.maximum(rungs, 0)], extra_p)
            formatted = (extra_rng.random((b, g)) < p_fmt[levels][:, None]).astype(float)
            correct = formatted * (reward_rng.random((b, g)) < p_solve[levels][:, None])
            shown = correct
            if setting.reward_noise:
                shown = np.abs(shown - (extra_rng.random((b, g)) < setting.reward_noise)) * formatted
            rewards = 0.1 * formatted + 0.9 * shown
            signal = grpo_signal(rewards, correct)
        elif plain:
            correct = (reward_rng.random((b, g)) < p_level[levels][:, None]).astype(float)
            rewards = correct
            signal = group_signal(rewards)
        else:
            correct = (reward_rng.random((b, g)) < p_level[levels][:, None]).astype(float)
            shown = correct
            if setting.reward_noise:
                shown = np.abs(shown - (extra_rng.random((b, g)) < setting.reward_noise))
            if setting.partial_reward:
                fmt = np.maximum(shown, extra_rng.random((b, g)) < setting.format_rate)
                rewards = 0.1 * fmt + 0.9 * shown
            else:
                rewards = shown
            signal = grpo_signal(rewards, correct)
        scheduler.update(step, np.repeat(levels, g).tolist(), rewards.reshape(-1).tolist())
        learning_groups += int((rewards.std(axis=1) > 0).sum())
        ladder = on_ladder[levels]
        per_level = np.bincount(rungs[levels[ladder]], weights=signal[ladder], minlength=k) / b
        skill = skill + lr * per_level @ kernel
        if setting.learned_format:
            pushed = np.bincount(rungs[levels[ladder]], weights=grpo_signal(rewards, formatted)[ladder], minlength=k)
            fmt_logit = fmt_logit + lr * (pushed / b) @ fmt_kernel
        if setting.mastered_cost:
            drilled = int((p_level[levels] >= setting.mastery).sum())
            mastered_prompts += drilled
            skill = skill - lr * setting.mastered_cost * drilled / b
        if setting.forgetting:
            skill = skill0 + (1.0 - setting.forgetting) * (skill - skill0)
            if setting.learned_format:
                fmt_logit = fmt0 + (1.0 - setting.forgetting) * (fmt_logit - fmt0)
        share[step] = np.bincount(levels, minlength=kv) / b
    accuracy[-1] = success_probs(skill, difficulty)
    if setting.learned_format:
        accuracy[-1] *= success_probs(fmt_logit, 0.0)
    extra = {"difficulty": difficulty.tolist(), "lr": lr, "rungs": rungs.tolist()}
    return RunResult(setting.name, schedule, seed, accuracy, share, learning_groups, mastered_prompts, extra)
