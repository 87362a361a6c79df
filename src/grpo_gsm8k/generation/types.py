"""What every backend takes and returns: sampling settings, completions, the Backend protocol."""

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
