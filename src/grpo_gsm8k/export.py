"""``grpo-gsm8k export ADAPTER --out DIR``: a LoRA adapter merged into its base model, saved as a
plain checkpoint (:func:`grpo_gsm8k.models.merge_adapter`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .models import ModelError, build_once, check_adapter, merge_adapter


@dataclass
class ExportConfig:
    """Options of ``grpo-gsm8k export``: merge a LoRA adapter (a ``train --use_peft`` output or
    checkpoint) into its base model and save a plain transformers checkpoint with the tokenizer."""

    positional: ClassVar[tuple[str, ...]] = ("adapter",)

    adapter: str = field(metadata={"help": "folder with adapter_config.json"})
    out: str = field(metadata={"help": "output folder for the merged checkpoint"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the model's own Python code"}
    )


def run(config: ExportConfig) -> Path:
    """The merged checkpoint in ``config.out``, built in a temp folder beside it and renamed."""
    if not (Path(config.adapter) / "adapter_config.json").is_file():
        raise ModelError(f"{config.adapter}: not a LoRA adapter folder (no adapter_config.json)")
    check_adapter(Path(config.adapter))
    final = Path(config.out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise ModelError(f"{config.out}: already exists and is not an empty folder")
    if final.is_dir():
        final.rmdir()
    merged = build_once(
        final, lambda tmp: merge_adapter(config.adapter, str(tmp), config.trust_remote_code)
    )
    print(f"wrote {merged}")
    return merged
