"""The trainer and what rides along with it: the in-training eval, the log files, the completion
samples, and a learning rate changed on resume.

- :class:`GSM8KGRPOTrainer`: TRL's ``GRPOTrainer``, whose next log event also carries the
  in-training eval; on CPU its colocated vLLM engine and LM head are this package's.
- :class:`MetricsFile`: every log event as one line of ``metrics.jsonl``.
- :class:`HeldOutEval`: greedy accuracy and format rate on held-out questions; under several
  processes each rank answers its share of the questions and the results are gathered.
- :class:`CompletionLog`: a few completions per step with every reward, in ``completions.jsonl``.
- :class:`LearningRateOverride`: a resumed run's new ``learning_rate`` applied to the optimizer
  and scheduler state restored from the checkpoint (which keep the old rate otherwise).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from trl import GRPOTrainer

from ..generation import SamplingSettings
from ..generation.hf import generate
from ..grading import score
from ..prompts import prompt_ids
from ..rewards import RewardFunc, completion_text
from ..runfiles import append_jsonl
from .sampling_gap import SamplingGapLog


class GSM8KGRPOTrainer(SamplingGapLog, GRPOTrainer):
    """GRPOTrainer whose next log event also carries ``extra_logs`` (the in-training eval). Its
    colocated vLLM engine runs in the trainer's dtype (:mod:`.vllm_sync`; on CPU
    :class:`.vllm_sync.CPUVLLMGeneration`), the sampler/learner gap is always logged
    (:mod:`.sampling_gap`), and on CPU its LM head scores only completion tokens
    (:mod:`.cpu_logprobs`)."""

    extra_logs: dict[str, float] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from .cpu_logprobs import score_completion_tokens_only_on_cpu
        from .vllm_sync import colocated_engine

        score_completion_tokens_only_on_cpu()
        with colocated_engine(kwargs["args"]):
            super().__init__(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.extra_logs:
            logs = {**logs, **self.extra_logs}
            self.extra_logs = None
        super().log(logs, start_time)


class MetricsFile(TrainerCallback):
    """Appends every log event to ``metrics.jsonl`` as one JSON line with its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, [{"step": state.global_step, "epoch": state.epoch, **logs}])


class LearningRateOverride(TrainerCallback):
    """Sets a resumed run's learning rate. The checkpoint's optimizer and scheduler state carry
    the base rate they were saved with; once they are restored (before ``on_train_begin``), every
    parameter group's rate, and the scheduler's base rates, are scaled by ``new / saved``, so the
    schedule (warmup, decay) continues from the same step with the new peak rate (unchanged when
    the rates are equal)."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def on_train_begin(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any
    ) -> None:
        scheduler = kwargs.get("lr_scheduler")
        if optimizer is None or scheduler is None:
            return
        bases = list(getattr(scheduler, "base_lrs", []))
        for i, group in enumerate(optimizer.param_groups):
            old = bases[i] if i < len(bases) else group.get("initial_lr", group["lr"])
            ratio = self.learning_rate / old if old else 0.0
            group["lr"] = group["lr"] * ratio if old else self.learning_rate
            group["initial_lr"] = self.learning_rate
        if bases:
            scheduler.base_lrs = [self.learning_rate for _ in bases]
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def rank_share(n: int, rank: int, world_size: int) -> list[int]:
    """The indices of the ``n`` eval questions that rank ``rank`` answers."""
    return list(range(rank, n, world_size))


class HeldOutEval(TrainerCallback):
    """Greedy accuracy (strict, flexible) and format rate on held-out questions every ``every``
    steps (and at the start and the end) on the live model, logged as ``eval/*``.

    Under several processes rank ``r`` answers questions ``r, r + world_size, ...``; the answers
    are gathered to every rank (only the main process writes the log), so the eval costs each
    rank ``1 / world_size`` of it."""

    def __init__(
        self,
        trainer: GSM8KGRPOTrainer,
        prompts: list[str],
        golds: list[str],
        every: int,
        at_start: bool,
        max_new_tokens: int,
        batch_size: int,
    ) -> None:
        self.trainer = trainer
        self.prompts = prompts
        self.golds = golds
        self.every = every
        self.at_start = at_start
        self.sampling = SamplingSettings(max_new_tokens=max_new_tokens)
        self.batch_size = batch_size

    def _answers(self, indices: list[int]) -> list[tuple[int, str, int, bool]]:
        """(index, text, tokens, truncated) of the greedy answers to ``indices``."""
        import torch

        from .vllm_sync import CPUVLLMGeneration

        trainer = self.trainer
        prompts = [self.prompts[i] for i in indices]
        if not prompts:
            return []
        engine = getattr(trainer, "vllm_generation", None) if trainer.use_vllm else None
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):  # generate() seeds; keep training's RNG as is
            if isinstance(engine, CPUVLLMGeneration):  # the colocated engine, synced first
                if trainer._last_loaded_step != trainer.state.global_step:
                    engine.sync_weights()
                    trainer._last_loaded_step = trainer.state.global_step
                tokenizer = trainer.processing_class
                ids = [prompt_ids(tokenizer, p) for p in prompts]
                results = [[c] for c in engine.greedy(ids, self.sampling.max_new_tokens)]
            else:
                results = generate(
                    trainer.accelerator.unwrap_model(trainer.model),
                    trainer.processing_class,
                    prompts,
                    self.sampling,
                    self.batch_size,
                    progress=False,
                )
        return [
            (i, group[0].text, group[0].tokens, group[0].truncated)
            for i, group in zip(indices, results, strict=True)
        ]

    def evaluate(self) -> dict[str, float]:
        args = self.trainer.args
        answers = self._answers(rank_share(len(self.prompts), args.process_index, args.world_size))
        if args.world_size > 1:
            from accelerate.utils import gather_object

            answers = gather_object(answers)
        answers = sorted(answers)
        texts = [text for _, text, _, _ in answers]
        metrics = {f"eval/{k}": v for k, v in score(texts, self.golds).items()}
        metrics["eval/mean_tokens"] = sum(a[2] for a in answers) / len(answers)
        metrics["eval/truncated_rate"] = sum(a[3] for a in answers) / len(answers)
        return metrics

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.at_start and state.global_step == 0:
            self.trainer.log(self.evaluate())

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.trainer.extra_logs = self.evaluate()
            control.should_log = True
        return control


class CompletionLog:
    """Wraps the reward functions: the last one of each call appends a few completions with
    every reward's value (and which keyword arguments TRL passed) to ``completions.jsonl``.

    Under several processes every rank scores its own completions: each contributes its first
    ``ceil(per_step / world_size)`` rows (tagged with ``rank``), gathered to the main process,
    which alone writes the first ``per_step`` of them."""

    def __init__(self, path: Path, per_step: int, rank: int = 0, world_size: int = 1) -> None:
        self.path = path
        self.per_step = per_step
        self.rank = rank
        self.world_size = world_size
        self.enabled = per_step > 0  # the same on every rank: gathering is collective
        self.values: dict[str, list[float]] = {}

    def wrap(self, funcs: list[RewardFunc]) -> list[RewardFunc]:
        return [self._wrap(f, last=i == len(funcs) - 1) for i, f in enumerate(funcs)]

    def _wrap(self, func: RewardFunc, last: bool) -> RewardFunc:
        @functools.wraps(func)
        def wrapped(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            values = func(prompts, completions, **kwargs)
            self.values[func.__name__] = values
            if last and self.enabled:
                self._write(completions, kwargs)
            return values

        return wrapped

    def _write(self, completions: list[Any], kwargs: dict[str, Any]) -> None:
        state = kwargs.get("trainer_state")
        step = state.global_step + 1 if state is not None else None
        ids = kwargs.get("completion_ids")
        golds = kwargs.get("gold")
        rows = []
        per_rank = -(-self.per_step // self.world_size)
        for i in range(min(per_rank, len(completions))):
            rows.append(
                {
                    "step": step,
                    "rank": self.rank,
                    "gold": golds[i] if golds else None,
                    "completion": completion_text(completions[i]),
                    "tokens": len(ids[i]) if ids else None,
                    "rewards": {name: v[i] for name, v in self.values.items()},
                    "reward_kwargs": sorted(kwargs),
                }
            )
        if self.world_size > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)[: self.per_step]
        if self.rank == 0:
            append_jsonl(self.path, rows)
