"""Reward functions for TRL's ``GRPOTrainer``.

Each has TRL's signature ``f(prompts, completions, **dataset_columns) -> list[float]``; completions
are strings (plain prompts) or chat-message lists (conversational prompts). They read answers with
the grader in :mod:`grpo_gsm8k.grading`; there is no second parser.

accuracy
    ``correct`` (+1) when the answer equals the row's ``gold``, else ``wrong`` (-1).
format
    ``format_ok`` (+0.2) when the completion has a ``#### <number>`` answer line, else
    ``format_bad`` (-0.2).
length
    ``short_penalty`` (-0.5) when the completion is shorter than ``min_chars`` (30), else 0.

Weights between them are TRL's ``reward_weights``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .grading import Mode, extract_strict, grade

RewardFunc = Callable[..., list[float]]
REWARD_NAMES = ("accuracy", "format", "length")


@dataclass
class RewardSettings:
    """Values of the rewards (weights live in GRPOConfig.reward_weights)."""

    mode: Mode = "flexible"  # grading mode of the accuracy reward
    correct: float = 1.0
    wrong: float = -1.0
    format_ok: float = 0.2
    format_bad: float = -0.2
    short_penalty: float = -0.5
    min_chars: int = 30

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown reward setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(
            str(m.get("content") or "") for m in completion if m.get("role", "assistant") != "user"
        )
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def make_reward_funcs(names: list[str], settings: RewardSettings | None = None) -> list[RewardFunc]:
    """The reward functions called ``names`` (from :data:`REWARD_NAMES`), in order."""
    s = settings or RewardSettings()

    def accuracy(
        prompts: list[Any], completions: list[Any], gold: list[str], **_: Any
    ) -> list[float]:
        return [
            s.correct if grade(completion_text(c), g, s.mode) else s.wrong
            for c, g in zip(completions, gold, strict=True)
        ]

    def format(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [
            s.format_ok if extract_strict(completion_text(c)) is not None else s.format_bad
            for c in completions
        ]

    def length(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [
            s.short_penalty if len(completion_text(c).strip()) < s.min_chars else 0.0
            for c in completions
        ]

    table: dict[str, RewardFunc] = {"accuracy": accuracy, "format": format, "length": length}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown reward(s) {', '.join(unknown)}; known: {', '.join(table)}")
    return [table[n] for n in names]
