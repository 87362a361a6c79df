"""What ``launch/slurm/train.sbatch`` needs to know about a training command, read with train's
own option parser (``--config X`` or ``--config=X``, ``--model``, every override), before any
process starts::

    python -m grpo_gsm8k.training.launch_plan --processes 32 --gpus-per-node 8 [--stage] \\
        -- --config recipes/qwen2.5-3b-instruct.yaml ...

prints ``key<TAB>value`` lines: ``model`` (with ``--stage``: a local folder, the hub model
downloaded once on this host; without: the local folder when it is already cached), ``heads``
(the model's attention heads, empty when unknown), ``tensor_parallel`` (the largest divisor of
the heads <= GPUs per node), ``gradient_accumulation_steps`` (derived from ``prompts_per_step``
for this many processes, or the one given), ``batch`` (the arithmetic in words), ``output_dir``
and ``checkpoint`` (the latest ``checkpoint-N`` there, empty when none). A command that cannot
run is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import RecipeError, UserError
from .distributed import batch_arithmetic, derive_accumulation, tensor_parallel_default


def _given(argv: list[str], name: str) -> bool:
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(a in flags or a.split("=", 1)[0] in flags for a in argv)


def _local_model(name: str, stage: bool) -> str:
    """A local folder for ``name``: resolved (and downloaded) with --stage, else only when it
    is an alias, a folder or already in the hub cache; otherwise the hub id itself."""
    from ..models import resolve_model
    from ..runfiles import looks_like_path

    if stage or looks_like_path(name) or "/" not in name or Path(name).exists():
        return resolve_model(name).path
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True, allow_patterns=["*.json"]))
    except Exception:
        return name


def _heads(model: str) -> int | None:
    """``num_attention_heads`` of a local folder's config.json, else of the hub's (a dry run on a
    machine without the model; None when neither can be read)."""
    path = Path(model) / "config.json"
    try:
        if not path.is_file():
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "config.json"))
        config = json.loads(path.read_text(encoding="utf-8"))
    except Exception:
        return None
    for part in (config, config.get("text_config") or {}, config.get("llm_config") or {}):
        if isinstance(part.get("num_attention_heads"), int):
            return int(part["num_attention_heads"])
    return None


def plan(
    train_argv: list[str], processes: int, gpus_per_node: int, stage: bool, tp: int | None
) -> dict[str, Any]:
    from transformers.trainer_utils import get_last_checkpoint

    from ..errors import OptionsError
    from ..options import parse_options
    from .recipe import option_types, train_defaults

    try:  # train's own parser; the launch checks need the launched world size, so they run below
        script, config = parse_options(
            option_types(), train_argv, "grpo-gsm8k train", defaults=train_defaults()
        )
    except OptionsError as e:
        raise RecipeError(str(e)) from None
    accumulation = config.gradient_accumulation_steps
    if script.prompts_per_step is not None and not _given(
        train_argv, "gradient_accumulation_steps"
    ):
        accumulation = derive_accumulation(
            config.per_device_train_batch_size,
            processes,
            config.num_generations,
            script.prompts_per_step,
        )
    launched = argparse.Namespace(**{**config.__dict__})
    launched.world_size = processes
    launched.gradient_accumulation_steps = accumulation
    launched.generation_batch_size = None
    launched.steps_per_generation = None
    batch = batch_arithmetic(launched, script.prompts_per_step)
    model = _local_model(script.model, stage)
    heads = _heads(model)
    if tp is not None and heads is not None and heads % tp:
        raise RecipeError(
            f"VLLM_TP {tp} does not divide the {heads} attention heads of {script.model} "
            f"(vLLM refuses it); largest that fits {gpus_per_node} GPUs: "
            f"{tensor_parallel_default(heads, gpus_per_node)}"
        )
    out = Path(str(config.output_dir))
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    return {
        "model": model,
        "heads": heads if heads is not None else "",
        "tensor_parallel": tp or (tensor_parallel_default(heads, gpus_per_node) if heads else ""),
        "gradient_accumulation_steps": accumulation,
        "batch": (
            f"{batch['per_device_train_batch_size']} per device x {processes} process(es) x "
            f"{accumulation} accumulation = {batch['completions_per_step']} completions "
            f"({batch['prompts_per_step']} prompts x {batch['num_generations']}) per step"
        ),
        "output_dir": str(out),
        "checkpoint": checkpoint or "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_gsm8k.training.launch_plan")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, required=True)
    parser.add_argument("--tensor-parallel", type=int, default=None)
    parser.add_argument("--stage", action="store_true")
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    try:
        result = plan(
            train_args, args.processes, args.gpus_per_node, args.stage, args.tensor_parallel
        )
    except UserError as e:
        print(str(e).splitlines()[0] if str(e) else type(e).__name__, file=sys.stderr)
        return 2
    for key, value in result.items():
        print(f"{key}\t{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
