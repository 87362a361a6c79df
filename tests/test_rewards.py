"""Reward functions: values, settings, and both completion shapes TRL passes."""

from __future__ import annotations

import pytest

from grpo_gsm8k.rewards import RewardSettings, completion_text, make_reward_funcs

COMPLETIONS = [
    "3 + 4 = 7 apples in total, so\n#### 7",
    "The answer is 7 because three plus four is seven.",
    "#### 8",
    "",
]
GOLD = ["7"] * 4


def test_published_values() -> None:
    accuracy, fmt, length = make_reward_funcs(["accuracy", "format", "length"])
    assert [f.__name__ for f in (accuracy, fmt, length)] == ["accuracy", "format", "length"]
    assert accuracy(["p"] * 4, COMPLETIONS, gold=GOLD) == [1.0, 1.0, -1.0, -1.0]
    assert fmt(["p"] * 4, COMPLETIONS, gold=GOLD) == [0.2, -0.2, 0.2, -0.2]
    assert length(["p"] * 4, COMPLETIONS, gold=GOLD) == [0.0, 0.0, -0.5, -0.5]


def test_settings_and_chat_completions() -> None:
    settings = RewardSettings(mode="strict", correct=2.0, wrong=0.0)
    (accuracy,) = make_reward_funcs(["accuracy"], settings)
    chat = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert accuracy([[{"role": "user", "content": "q"}]] * 4, chat, gold=GOLD) == [2.0, 0, 0, 0]
    assert completion_text(chat[0]) == COMPLETIONS[0]


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward_funcs(["accuracy", "brevity"])
    with pytest.raises(ValueError, match="unknown reward setting"):
        RewardSettings.from_dict({"corect": 1})
