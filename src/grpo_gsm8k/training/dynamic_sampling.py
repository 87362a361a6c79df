"""Dynamic sampling (DAPO, arXiv 2503.14476): train on prompt groups whose rewards differ.

A group whose completions all earn the same reward has the same advantage on every completion
(zero under Dr GRPO), so it adds nothing to the policy gradient; on a small model most groups of
a step can be like that, and the step learns from the few others. TRL 1.16's ``GRPOTrainer`` has
no dynamic sampling: it logs ``frac_reward_zero_std`` and trains on every group.

With ``dynamic_sampling_rounds: N`` (N > 0), after TRL has generated and scored a generation
batch, the groups whose scored values (the advantages, which differ within a group exactly when
the rewards do) have no spread are dropped, and the batch is refilled with groups of new prompts
drawn from the training set, generated and scored by TRL's own entry point
(``_generate_and_score_completions``: colocated or server vLLM, or transformers, on CPU or GPU),
for at most N extra rounds. Each extra round generates only as many groups as the batch still
lacks (the largest shortfall over processes, so that every process makes the same collective
calls). Slots still without signal after the last round keep their zero-spread groups, so the
batch keeps its shape; they add nothing to the gradient. Advantages stay those of each group's
own round. Refill prompts are drawn with replacement, seeded by the training seed, the step, the
process and the round, so a resumed run draws the same ones.

Logged per generation batch: ``dynamic_sampling/zero_spread_frac`` (the share of the first
round's groups without spread), ``/refilled`` (groups replaced by groups with signal),
``/unfilled`` (groups still without signal after the last round), ``/extra_rounds`` and
``/extra_groups`` (groups generated in extra rounds); counts summed over processes. TRL's own
``reward``, ``frac_reward_zero_std`` and completion metrics average over every round generated.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from ..errors import RecipeError

PREFIX = "dynamic_sampling/"
# rows padded on the left (prompts) or the right (completions and per-token values), and with what
PAD_TOKEN = -1  # stands for the tokenizer's pad token id
LEFT_PADDED: dict[str, float] = {"prompt_ids": PAD_TOKEN, "prompt_mask": 0}
RIGHT_PADDED: dict[str, float] = {
    "completion_ids": PAD_TOKEN,
    "completion_mask": 0,
    "tool_mask": 1,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "importance_sampling_ratio": 1.0,
}
PER_ROW = {"advantages"}


def check(rounds: int, config: Any) -> None:
    """The settings dynamic sampling needs, before a model loads."""
    if rounds < 0:
        raise RecipeError(f"dynamic_sampling_rounds must be >= 0, got {rounds}")
    local = config.per_device_train_batch_size * (config.steps_per_generation or 1)
    if rounds and local % config.num_generations:
        raise RecipeError(
            f"dynamic_sampling_rounds: each process's generation batch ({local} = "
            f"per_device_train_batch_size x steps_per_generation) must hold whole prompt groups "
            f"(a multiple of num_generations = {config.num_generations})"
        )


def group_has_signal(values: torch.Tensor, group_size: int, atol: float = 1e-6) -> torch.Tensor:
    """Per group of ``group_size`` consecutive values: whether they differ (max - min > atol)."""
    groups = values.reshape(-1, group_size)
    return (groups.max(dim=1).values - groups.min(dim=1).values) > atol


def choose_groups(signal: list[torch.Tensor], needed: int) -> list[tuple[int, int]]:
    """``needed`` (round, group) picks from per-round signal masks: the first round's groups with
    signal, then later rounds' in order, then the first round's groups without signal."""
    picks = [(r, int(g)) for r, mask in enumerate(signal) for g in torch.nonzero(mask).flatten()]
    fill = [(0, int(g)) for g in torch.nonzero(~signal[0]).flatten()]
    return sorted((picks + fill)[:needed])


def _pad(rows: list[torch.Tensor], value: float, left: bool) -> torch.Tensor:
    width = max(r.shape[-1] for r in rows)
    out = []
    for r in rows:
        pad = r.new_full((width - r.shape[-1],), value)
        out.append(torch.cat([pad, r]) if left else torch.cat([r, pad]))
    return torch.stack(out)


def merge_groups(
    outputs: list[dict[str, Any]], picks: list[tuple[int, int]], group_size: int, pad_id: int
) -> dict[str, Any]:
    """One batch of the picked groups' rows, re-padded to a common width
    (``num_items_in_batch`` is left to the caller: it counts over every process)."""
    merged: dict[str, Any] = {}
    for key, first in outputs[0].items():
        if key == "num_items_in_batch":
            continue
        if key not in PER_ROW and key not in LEFT_PADDED and key not in RIGHT_PADDED:
            raise RecipeError(f"dynamic sampling cannot merge TRL's {key!r} (text prompts only)")
        rows = [outputs[r][key][g * group_size + i] for r, g in picks for i in range(group_size)]
        if key in PER_ROW or first.ndim < 2:
            merged[key] = torch.stack(rows)
            continue
        padding = {**LEFT_PADDED, **RIGHT_PADDED}[key]
        merged[key] = _pad(rows, pad_id if padding == PAD_TOKEN else padding, key in LEFT_PADDED)
    return merged


class DynamicSampling:
    """Replaces a trainer's ``_generate_and_score_completions``; see the module docstring."""

    def __init__(self, trainer: Any, rounds: int) -> None:
        self.trainer = trainer
        self.rounds = rounds
        self.generate_and_score = trainer._generate_and_score_completions
        self.group_size = trainer.num_generations

    def __call__(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        trainer = self.trainer
        first = self.generate_and_score(inputs)
        if not trainer.model.training:
            return first
        needed = len(inputs) // self.group_size
        outputs, signal = [first], [group_has_signal(first["advantages"], self.group_size)]
        extra_groups = 0
        for round_ in range(1, self.rounds + 1):
            have = sum(int(m.sum()) for m in signal)
            missing = self._global_max(max(needed - have, 0))
            if missing == 0:
                break
            outputs.append(self.generate_and_score(self._draw(missing, round_)))
            signal.append(group_has_signal(outputs[-1]["advantages"], self.group_size))
            extra_groups += missing
        picks = choose_groups(signal, needed)
        batch = first
        if len(outputs) > 1:
            pad_id = trainer._tokenizer.pad_token_id
            batch = merge_groups(outputs, picks, self.group_size, pad_id)
            mask = batch["completion_mask"]
            loss_mask = mask * batch["tool_mask"] if "tool_mask" in batch else mask
            batch["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()
        self._log(signal, picks, needed, len(outputs) - 1, extra_groups)
        return batch

    def _global_max(self, value: int) -> int:
        device = self.trainer.accelerator.device
        return int(self.trainer.accelerator.gather(torch.tensor([value], device=device)).max())

    def _draw(self, groups: int, round_: int) -> list[dict[str, Any]]:
        """``groups`` new prompts from the training set, each repeated ``group_size`` times."""
        trainer = self.trainer
        dataset = trainer.train_dataset
        key = f"{trainer.args.seed}-{trainer.state.global_step}-{trainer.accelerator.process_index}"
        rng = random.Random(f"{key}-{round_}")
        rows = [dataset[rng.randrange(len(dataset))] for _ in range(groups)]
        return [dict(row) for row in rows for _ in range(self.group_size)]

    def _log(
        self,
        signal: list[torch.Tensor],
        picks: list[tuple[int, int]],
        needed: int,
        extra_rounds: int,
        extra_groups: int,
    ) -> None:
        zero = needed - int(signal[0].sum())
        refilled = sum(1 for r, _ in picks if r > 0)
        unfilled = sum(1 for r, g in picks if not bool(signal[r][g]))
        device = self.trainer.accelerator.device
        local = torch.tensor([needed, zero, refilled, unfilled, extra_groups], device=device)
        total = self.trainer.accelerator.gather(local).reshape(-1, 5).sum(dim=0).tolist()
        metrics = self.trainer._metrics["train"]
        metrics[f"{PREFIX}zero_spread_frac"].append(total[1] / total[0])
        metrics[f"{PREFIX}refilled"].append(float(total[2]))
        metrics[f"{PREFIX}unfilled"].append(float(total[3]))
        metrics[f"{PREFIX}extra_rounds"].append(float(extra_rounds))
        metrics[f"{PREFIX}extra_groups"].append(float(total[4]))


def enable(trainer: Any, rounds: int) -> None:
    """Turn dynamic sampling on for ``trainer`` (a GRPOTrainer) with at most ``rounds`` extra
    generation rounds per generation batch (0: leave it off)."""
    if rounds <= 0:
        return
    if not hasattr(trainer.train_dataset, "__getitem__"):
        raise RecipeError("dynamic_sampling_rounds needs a map-style training set")
    trainer._generate_and_score_completions = DynamicSampling(trainer, rounds)
