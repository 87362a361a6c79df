"""transformers ``generate``: batched, left-padded; runs any model vLLM cannot (e.g. GPT-Neo).

:func:`generate` also serves the in-training eval, on the live model being trained.
:meth:`HFBackend.stream` runs ``generate`` in a thread and reads its text from a
``TextIteratorStreamer``; a stopping criterion ends it when the caller's event is set."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from ..prompts import prompt_ids
from .types import Completion, SamplingSettings, Streamed


def special_ids(model: Any, tokenizer: Any) -> tuple[set[int], int]:
    """The ids that end a completion (the model's generation config's EOS ids and the
    tokenizer's) and the id to pad with (the tokenizer's pad token, else its EOS)."""
    eos_ids = model.generation_config.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    eos.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id
    return eos, tokenizer.eos_token_id if pad is None else pad


def _cut(ids: list[int], eos: set[int], max_new_tokens: int) -> tuple[list[int], bool, bool]:
    """The generated ids up to the first EOS (excluded), whether one came, whether the
    completion ran into ``max_new_tokens`` without one."""
    end = next((j for j, t in enumerate(ids) if t in eos), None)
    if end is not None:
        return ids[:end], True, False
    return ids, False, len(ids) >= max_new_tokens


def _decoding(sampling: SamplingSettings, pad_id: int) -> dict[str, Any]:
    """``model.generate`` arguments for ``sampling`` (greedy at temperature 0)."""
    greedy = sampling.temperature == 0
    return {
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": not greedy,
        "temperature": None if greedy else sampling.temperature,
        "top_p": None if greedy else sampling.top_p,
        "top_k": None,
        "pad_token_id": pad_id,
    }


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    sampling: SamplingSettings,
    batch_size: int = 32,
    progress: bool = True,
) -> list[list[Completion]]:
    """``sampling.n`` completions per prompt with ``model.generate`` (greedy at temperature 0)."""
    import torch

    eos, pad_id = special_ids(model, tokenizer)
    device = next(model.parameters()).device
    torch.manual_seed(sampling.seed)
    results: list[list[Completion]] = []
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc="generate (hf)", unit="prompt", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        encoded = [prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
        width = max(map(len, encoded))
        input_ids = torch.tensor([[pad_id] * (width - len(e)) + e for e in encoded], device=device)
        attention = torch.tensor(
            [[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device
        )
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                num_return_sequences=sampling.n,
                **_decoding(sampling, pad_id),
            )
        new = out[:, width:].tolist()
        for i in range(len(encoded)):
            group = []
            for ids in new[i * sampling.n : (i + 1) * sampling.n]:
                kept, _, truncated = _cut(ids, eos, sampling.max_new_tokens)
                text = tokenizer.decode(kept, skip_special_tokens=True)
                group.append(Completion(text, len(kept), truncated))
            results.append(group)
        bar.update(len(encoded))
    bar.close()
    if was_training:
        model.train()
    return results


class HFBackend:
    name = "hf"

    def __init__(
        self,
        model_path: str,
        batch_size: int = 32,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=trust_remote_code
        )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=dtype, trust_remote_code=trust_remote_code
        ).to(device)  # type: ignore[arg-type]
        self.dtype = str(self.model.dtype).removeprefix("torch.")

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        return generate(self.model, self.tokenizer, prompts, sampling, self.batch_size)

    def stream(
        self,
        prompt: str,
        sampling: SamplingSettings,
        stop: threading.Event,
        on_text: Callable[[str], None],
    ) -> Streamed:
        """``generate`` in a thread; its text arrives here through a ``TextIteratorStreamer``."""
        from transformers import TextIteratorStreamer

        eos, pad_id = special_ids(self.model, self.tokenizer)
        ids = prompt_ids(self.tokenizer, prompt)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}
        started = time.perf_counter()
        worker = threading.Thread(
            target=self._generate_into,
            args=(ids, sampling, pad_id, stop, streamer, result),
            name="hf-stream",
            daemon=True,
        )
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            on_text(text)
        worker.join()
        seconds = time.perf_counter() - started
        if "error" in result:
            raise result["error"]
        new = result["out"][0, len(ids) :].tolist()
        kept, ended, truncated = _cut(new, eos, sampling.max_new_tokens)
        text = str(self.tokenizer.decode(kept, skip_special_tokens=True))
        stopped = stop.is_set() and not ended and not truncated
        return Streamed(text, len(kept), truncated, stopped, seconds)

    def _generate_into(
        self,
        ids: list[int],
        sampling: SamplingSettings,
        pad_id: int,
        stop: threading.Event,
        streamer: Any,
        result: dict[str, Any],
    ) -> None:
        """The worker of :meth:`stream`: ``result["out"]``, or ``result["error"]``."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class StopFlag(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device
                )

        try:
            input_ids = torch.tensor([ids], device=next(self.model.parameters()).device)
            torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                result["out"] = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([StopFlag()]),
                    **_decoding(sampling, pad_id),
                )
        except BaseException as e:  # handed to the caller, which waits on the streamer
            result["error"] = e
            streamer.end()

    def close(self) -> None:
        del self.model
