"""transformers ``generate``: batched, left-padded; runs any model vLLM cannot (e.g. GPT-Neo).

:func:`generate` also serves the in-training eval, on the live model being trained."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from ..prompts import prompt_ids
from . import Completion, SamplingSettings


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

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    eos_ids = model.generation_config.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    eos.add(tokenizer.eos_token_id)
    greedy = sampling.temperature == 0
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
                max_new_tokens=sampling.max_new_tokens,
                do_sample=not greedy,
                temperature=sampling.temperature if not greedy else None,
                top_p=sampling.top_p if not greedy else None,
                top_k=None,
                num_return_sequences=sampling.n,
                pad_token_id=pad_id,
            )
        new = out[:, width:].tolist()
        for i in range(len(encoded)):
            group = []
            for ids in new[i * sampling.n : (i + 1) * sampling.n]:
                stop = next((j for j, t in enumerate(ids) if t in eos), None)
                kept = ids if stop is None else ids[:stop]
                text = tokenizer.decode(kept, skip_special_tokens=True)
                group.append(
                    Completion(
                        text, len(kept), stop is None and len(ids) >= sampling.max_new_tokens
                    )
                )
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

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        return generate(self.model, self.tokenizer, prompts, sampling, self.batch_size)

    def close(self) -> None:
        del self.model
