"""Reward functions for TRL's ``GRPOTrainer``.

Each has TRL's signature ``f(prompts, completions, **dataset_columns) -> list[float]``; completions
are strings (plain prompts) or chat-message lists (conversational prompts). They read answers with
the grader in :mod:`grpo_gsm8k.grading`; the one exception is :func:`seed_answer`, the published
seed scripts' own rule, which only the ``*_seed`` rewards use.

accuracy
    ``correct`` (+1) when the answer equals the row's ``gold``, else ``wrong`` (-1).
format
    ``format_ok`` (+0.2) only for the answer format the prompt asks for: exactly one ``#### N``
    answer line, the last non-blank line of the completion, nothing else on it, and ``N`` is the
    number the accuracy reward graded (:func:`grpo_gsm8k.grading.answer_line`), and the completion
    stopped there: one cut off at ``max_completion_length`` tokens (TRL's ``completion_ids``)
    ended on nothing, whatever its last line (``#### 0000…`` up to the limit); else
    ``format_bad`` (-0.2). A throwaway ``#### 0``, repeated or hedged answer lines, and text after
    the answer line all earn ``format_bad``; except that ``format_partial`` (by default also -0.2)
    goes to one shape only: that same well-formed answer line (``#### 18``, nothing else on it),
    then exactly one more non-blank line without ``####``, then the end (``#### 18\nThe answer
    is: 18.``). A hedged or annotated answer line (``#### 18 or 19``, ``#### 18 pens because
    ...``) followed by a line is not that shape and earns ``format_bad``. Set between the two (the
    CPU recipe: 0.0) the rung is a ladder for a model that rarely writes the whole format yet:
    one answer line and a stop soon after beat none, and only stopping on it earns ``format_ok``.
    ``format_marker`` (by default also -0.2) is the rung below it: that same one answer line of the
    graded number with more on its line or after it; the CPU recipe's -0.1
    pays a model for writing its answer line at all before it learns to stop there.
format_published
    A stricter reading of the published format reward: ``format_ok`` when the completion has any
    ``#### <number>`` (``####`` directly followed by a number), wherever and whatever the number.
    A policy can game it (a throwaway ``#### 0`` beside a ``\\boxed{}`` answer earns it).
length
    ``short_penalty`` (-0.5) when the completion, with runs of whitespace counted as one space, is
    shorter than ``min_chars`` (30), else 0.
overlong
    DAPO's soft overlong punishment (TRL's ``get_soft_overlong_punishment``, from the token ids):
    0 up to ``max_completion_length - overlong_cache`` tokens, then falling linearly to -1 at
    ``max_completion_length`` (a completion cut off there). The length a truncated completion
    would have had is unknown, so this is the one reward that says "stop before the limit".

The ``*_seed`` rewards are the published seed scripts' three reward functions (``train_grpo.py``
of the public grpo_gsm8k repository), reimplemented from their documented behaviour so that the
seed recipes (``recipes/seed/``) pay what the published runs paid; they are not our protocol:

format_seed
    ``format_ok`` when the text contains the substring ``####`` anywhere (``#### Step 2`` too),
    else ``format_bad``.
accuracy_seed
    ``correct`` when :func:`seed_answer` equals the gold as an integer, else ``wrong``. Their rule
    reads digit runs only (``1,080`` is 1, ``-3`` is 3, ``2.5`` is 2), so a negative gold is
    never matched, as in the published runs (every GSM8K gold is an integer).
length_seed
    ``short_penalty`` when the raw completion (whitespace counted as is) is shorter than
    ``min_chars``, else 0.

Weights between them are TRL's ``reward_weights``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .grading import (
    Mode,
    answer_line,
    answer_marker,
    extract,
    extract_strict,
    grade,
    same_number,
)

RewardFunc = Callable[..., list[float]]
SEED_REWARDS = ("format_seed", "accuracy_seed", "length_seed")  # the published order
REWARD_NAMES = (
    "accuracy",
    "format",
    "format_published",
    "length",
    "overlong",
    *SEED_REWARDS,
)  # every reward
DEFAULT_REWARDS = ("accuracy", "format", "length")
_DIGITS = re.compile(r"\d+")


@dataclass
class RewardSettings:
    """Values of the rewards (weights live in GRPOConfig.reward_weights)."""

    mode: Mode = "flexible"  # grading mode of the accuracy reward
    correct: float = 1.0
    wrong: float = -1.0
    format_ok: float = 0.2
    format_bad: float = -0.2
    format_partial: float = -0.2  # one answer line of the graded number, then one more line
    format_marker: float = -0.2  # that one answer line with more after it
    short_penalty: float = -0.5
    min_chars: int = 30
    overlong_cache: int = 16  # overlong: tokens before max_completion_length where it starts

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
    """The text of a TRL completion: a string, or a list of chat messages and/or strings."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(
            m if isinstance(m, str) else str(m.get("content") or "")
            for m in completion
            if isinstance(m, str) or m.get("role", "assistant") != "user"
        )
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def seed_answer(text: str) -> int | None:
    """The published seed scripts' answer rule (``extract_answer`` in their ``math_utils.py``),
    from its documented behaviour: the first run of digits after the *first* ``####``; when
    there is no ``####``, or no digit after it, the last run of digits in the whole text; None
    when the text has no digit. Signs, commas and decimal points are not read."""
    _, marker, after = text.partition("####")
    if marker:
        first = _DIGITS.search(after)
        if first:
            return int(first.group())
    numbers = _DIGITS.findall(text)
    return int(numbers[-1]) if numbers else None


def _as_int(gold: str) -> int | None:
    try:
        return int(gold)
    except ValueError:
        return None


def _answer_then_one_line(text: str) -> bool:
    """The rung's shape: a well-formed last answer line, then one more line without ``####``."""
    head, _, last = text.rstrip().rpartition("\n")
    return "####" not in last and answer_line(head) is not None


def make_reward_funcs(
    names: list[str], settings: RewardSettings | None = None, max_completion_length: int = 0
) -> list[RewardFunc]:
    """The reward functions called ``names`` (from :data:`REWARD_NAMES`), in order;
    ``overlong`` needs ``max_completion_length``."""
    s = settings or RewardSettings()

    def accuracy(
        prompts: list[Any], completions: list[Any], gold: list[str], **_: Any
    ) -> list[float]:
        return [
            s.correct if grade(completion_text(c), g, s.mode) else s.wrong
            for c, g in zip(completions, gold, strict=True)
        ]

    def format(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        out = []
        cut = _cut_off(kwargs.get("completion_ids"), max_completion_length, len(completions))
        for c, truncated in zip(completions, cut, strict=True):
            text = completion_text(c)
            marker = answer_marker(text)
            # no answer line, several, or another number than graded; or cut off at the limit,
            # so it ended on nothing (`#### 0000…` up to the limit)
            if truncated or marker is None or not same_number(extract(text, s.mode), marker[0]):
                out.append(s.format_bad)
            elif answer_line(text) is not None:  # that one line ends the completion
                out.append(s.format_ok)
            elif marker[1] == 1 and _answer_then_one_line(text):
                out.append(s.format_partial)
            else:
                out.append(s.format_marker)
        return out

    def format_published(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [
            s.format_ok if extract_strict(completion_text(c)) is not None else s.format_bad
            for c in completions
        ]

    def length(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [
            s.short_penalty if len(" ".join(completion_text(c).split())) < s.min_chars else 0.0
            for c in completions
        ]

    def format_seed(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [s.format_ok if "####" in completion_text(c) else s.format_bad for c in completions]

    def accuracy_seed(
        prompts: list[Any], completions: list[Any], gold: list[str], **_: Any
    ) -> list[float]:
        out = []
        for c, g in zip(completions, gold, strict=True):
            answer = seed_answer(completion_text(c))
            out.append(s.correct if answer is not None and answer == _as_int(g) else s.wrong)
        return out

    def length_seed(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [
            s.short_penalty if len(completion_text(c)) < s.min_chars else 0.0 for c in completions
        ]

    table: dict[str, RewardFunc] = {
        "accuracy": accuracy,
        "format": format,
        "format_published": format_published,
        "length": length,
        "format_seed": format_seed,
        "accuracy_seed": accuracy_seed,
        "length_seed": length_seed,
    }
    if "overlong" in names:
        table["overlong"] = _overlong(max_completion_length, s.overlong_cache)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(
            f"unknown reward(s) {', '.join(unknown)}; known: {', '.join(REWARD_NAMES)}"
        )
    return [table[n] for n in names]


def _cut_off(completion_ids: Any, max_completion_length: int, n: int) -> list[bool]:
    """Which completions reached ``max_completion_length`` tokens (cut off, not stopped); all
    False where the token ids or the limit are unknown."""
    if not completion_ids or max_completion_length <= 0:
        return [False] * n
    return [len(ids) >= max_completion_length for ids in completion_ids]


def _overlong(max_completion_length: int, cache: int) -> RewardFunc:
    """TRL's soft overlong punishment, named ``overlong`` in the logs."""
    from trl.rewards import get_soft_overlong_punishment

    if not 0 <= cache < max_completion_length:
        raise ValueError(
            f"overlong needs 0 <= overlong_cache < max_completion_length, got {cache} and "
            f"{max_completion_length}"
        )
    punish = get_soft_overlong_punishment(max_completion_length, cache)

    def overlong(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        return [float(r) for r in punish(completion_ids=kwargs["completion_ids"])]

    return overlong
