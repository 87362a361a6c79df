"""Dynamic sampling: the group filter on synthetic rewards, the refill's choice and merge of
groups, its settings checks, and one real training run of the embedded model with it on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from grpo_gsm8k.cli import main
from grpo_gsm8k.errors import RecipeError
from grpo_gsm8k.training.dynamic_sampling import (
    check,
    choose_groups,
    group_has_signal,
    merge_groups,
)


def test_group_filter_on_synthetic_rewards() -> None:
    rewards = torch.tensor(
        [
            *(-0.2, -0.2, -0.2, -0.2),  # every completion the same reward: no signal
            *(-0.2, 0.0, -0.2, -0.2),  # one differs
            *(1.2, 1.2, 1.2, 1.2),
            *(0.7, -0.7, 0.0, 1.2),
        ]
    )
    assert group_has_signal(rewards, 4).tolist() == [False, True, False, True]
    advantages = rewards - rewards.reshape(-1, 4).mean(dim=1).repeat_interleave(4)
    assert group_has_signal(advantages, 4).tolist() == [False, True, False, True]
    assert group_has_signal(torch.tensor([0.1, 0.1 + 1e-9, 3.0, 3.0]), 2).tolist() == [
        False,
        False,
    ]
    pairs = [False, False, True, False, False, False, True, True]
    assert group_has_signal(rewards, 2).tolist() == pairs


def test_choose_groups_prefers_signal_then_keeps_the_shape() -> None:
    first = torch.tensor([False, True, False, False])
    extra = torch.tensor([True, False, True])
    assert choose_groups([first, extra], 4) == [(0, 0), (0, 1), (1, 0), (1, 2)]
    assert choose_groups([first, torch.tensor([False])], 4) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    everything = torch.tensor([True] * 4)
    assert choose_groups([first, everything], 4) == [(0, 1), (1, 0), (1, 1), (1, 2)]


def output(groups: list[list[float]], prompt_width: int, completion_width: int) -> dict:
    rows = sum(len(g) for g in groups)
    return {
        "prompt_ids": torch.full((rows, prompt_width), 7),
        "prompt_mask": torch.ones(rows, prompt_width, dtype=torch.long),
        "completion_ids": torch.full((rows, completion_width), 9),
        "completion_mask": torch.ones(rows, completion_width, dtype=torch.long),
        "importance_sampling_ratio": torch.ones(rows, 1),
        "advantages": torch.tensor([a for g in groups for a in g]),
        "num_items_in_batch": torch.tensor(rows * completion_width),
    }


def test_merge_groups_repads_rows_of_different_rounds() -> None:
    first = output([[0.0, 0.0], [0.5, -0.5]], prompt_width=3, completion_width=4)
    extra = output([[1.0, -1.0]], prompt_width=5, completion_width=2)
    merged = merge_groups([first, extra], [(0, 1), (1, 0)], 2, pad_id=0)
    assert merged["advantages"].tolist() == [0.5, -0.5, 1.0, -1.0]
    assert merged["prompt_ids"].tolist() == [[0, 0, 7, 7, 7]] * 2 + [[7] * 5] * 2
    assert merged["prompt_mask"].tolist() == [[0, 0, 1, 1, 1]] * 2 + [[1] * 5] * 2
    assert merged["completion_ids"].tolist() == [[9] * 4] * 2 + [[9, 9, 0, 0]] * 2
    assert merged["completion_mask"].sum().item() == 2 * 4 + 2 * 2
    assert merged["importance_sampling_ratio"].shape == (4, 1)
    assert "num_items_in_batch" not in merged
    with pytest.raises(RecipeError, match="'pixel_values'"):
        merge_groups([{**first, "pixel_values": torch.zeros(4, 1)}], [(0, 0)], 2, 0)


def test_settings_checked_before_a_model_loads() -> None:
    config = SimpleNamespace(
        per_device_train_batch_size=8, steps_per_generation=1, num_generations=4
    )
    check(0, config)
    check(2, config)
    with pytest.raises(RecipeError, match="must be >= 0"):
        check(-1, config)
    with pytest.raises(RecipeError, match="multiple of num_generations = 3"):
        check(1, SimpleNamespace(**{**vars(config), "num_generations": 3}))


@pytest.mark.slow
def test_train_with_dynamic_sampling(prepared: Path, tmp_path: Path) -> None:
    """Two real steps (transformers generation: the entry point TRL uses on any device) with up to
    two refill rounds; 12-token completions, so many groups are all truncated alike."""
    out = tmp_path / "ds"
    args = [
        "train",
        "--config",
        "recipes/cpu-smollm2.yaml",
        "--train_file",
        str(prepared / "train.jsonl"),
        "--eval_file",
        str(prepared / "eval.jsonl"),
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "4",
        "--num_generations",
        "2",
        "--max_completion_length",
        "12",
        "--eval_every",
        "0",
        "--max_steps",
        "2",
        "--save_steps",
        "2",
        "--use_vllm",
        "false",
        "--bf16",
        "false",
        "--dynamic_sampling_rounds",
        "2",
    ]
    assert main(args) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    steps = [s for s in steps if "dynamic_sampling/extra_rounds" in s]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert 0.0 <= s["dynamic_sampling/zero_spread_frac"] <= 1.0
        assert 0 <= s["dynamic_sampling/extra_rounds"] <= 2
        assert s["dynamic_sampling/refilled"] + s["dynamic_sampling/unfilled"] <= 2
        if s["dynamic_sampling/zero_spread_frac"] > 0:
            assert s["dynamic_sampling/extra_rounds"] >= 1 and s["dynamic_sampling/extra_groups"]
        else:
            assert s["dynamic_sampling/extra_rounds"] == 0
    config = json.loads((out / "grpo_gsm8k_config.json").read_text())
    assert config["grpo_gsm8k"]["dynamic_sampling_rounds"] == 2
    assert (out / "model.safetensors").is_file()
