"""Multi-process training: what the launcher set up, and the batch arithmetic across ranks.

``grpo-gsm8k train`` runs unchanged under ``accelerate launch`` and ``torchrun`` (see
``launch/accelerate/`` and ``launch/slurm/``). Before any model loads, :func:`check_launch` checks
that the per-rank batch adds up to the ``prompts_per_step`` a recipe or command line asks for::

    per_device_train_batch_size x processes x gradient_accumulation_steps
        = completions per optimizer step = prompts_per_step x num_generations

(the global batch grows with the number of processes otherwise), and refuses launch configs
that would silently degrade or fail after the model loads (an FSDP config on CPU runs plain DDP;
a DeepSpeed config needs the ``deepspeed`` package; vLLM generation on CPU works in one process).
:func:`launch_record` is what ``grpo_gsm8k_config.json`` keeps under ``launch``: world size,
launcher, the launcher's command line and its accelerate config file, and the distributed
environment variables. :func:`check_resume_launch` refuses to resume a run under another world
size or accelerate config, and :class:`SaveOnSignal` saves a checkpoint when Slurm's ``--signal``
announces the time limit. :func:`derive_accumulation` and :func:`tensor_parallel_default` are the
arithmetic ``launch/slurm/train.sbatch`` applies (through :mod:`.launch_plan`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..errors import RecipeError
from ..runfiles import TRAIN_CONFIG

# set to resume a run under another world size or accelerate config (see check_resume_launch)
RESHARD_VARIABLE = "GRPO_GSM8K_RESHARD"

# environment variables that describe the launch (accelerate's ACCELERATE_*/FSDP_*, torchrun's)
ENV_PREFIXES = ("ACCELERATE_", "FSDP_", "TORCHELASTIC_", "PARALLELISM_CONFIG_")
ENV_KEYS = (
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "SLURM_JOB_ID",
    "SLURM_NNODES",
    "SLURM_JOB_NODELIST",
    "SLURM_NODEID",
    "SLURM_RESTART_COUNT",
    "VLLM_HOST_IP",
)


def _launch_variable(name: str) -> bool:
    return name in ENV_KEYS or name.startswith(ENV_PREFIXES)


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def check_environment() -> None:
    """What must hold before the settings are parsed (parsing builds the DeepSpeed plugin)."""
    if _flag("ACCELERATE_USE_DEEPSPEED") and importlib.util.find_spec("deepspeed") is None:
        raise RecipeError(
            "the launch config uses DeepSpeed but the deepspeed package is not installed "
            "(pip install -e .[deepspeed], or launch with launch/accelerate/ddp.yaml or fsdp2.yaml)"
        )


def batch_arithmetic(config: Any, prompts_per_step: int | None = None) -> dict[str, Any]:
    """The global batch of one optimizer step from the per-rank settings; a RecipeError when
    ``prompts_per_step`` is given and the launch does not give it.

    TRL itself requires whole prompt groups per generation batch (``generation_batch_size``,
    by default one optimizer step's completions)."""
    per_device = config.per_device_train_batch_size
    processes = config.world_size
    accumulation = config.gradient_accumulation_steps
    generations = config.num_generations
    completions = per_device * processes * accumulation
    prompts = completions // generations if completions % generations == 0 else None
    if prompts_per_step is not None and prompts != prompts_per_step:
        raise RecipeError(
            f"per_device_train_batch_size {per_device} x {processes} process(es) x "
            f"gradient_accumulation_steps {accumulation} = {completions} completions per step, "
            f"not prompts_per_step {prompts_per_step} x num_generations {generations}; adjust "
            f"per_device_train_batch_size or gradient_accumulation_steps for {processes} "
            "process(es)"
        )
    return {
        "per_device_train_batch_size": per_device,
        "processes": processes,
        "gradient_accumulation_steps": accumulation,
        "completions_per_step": completions,
        "num_generations": generations,
        "prompts_per_step": prompts,  # None: a step holds part of a prompt group
        "completions_per_rank_per_step": per_device * accumulation,
        "generation_batch_size": config.generation_batch_size,
        "steps_per_generation": config.steps_per_generation,
    }


def check_launch(config: Any, prompts_per_step: int | None = None) -> None:
    """Checks that need the world size (known once the settings are parsed), before any model."""
    batch_arithmetic(config, prompts_per_step)
    state = config.distributed_state
    kind = str(getattr(state, "distributed_type", "NO")).split(".")[-1]
    device = getattr(getattr(state, "device", None), "type", "cpu")
    if config.world_size > 1 and device == "cpu" and config.use_vllm:
        raise RecipeError(
            f"vLLM generation on CPU runs in one training process, not {config.world_size} "
            "(colocated: one engine per process; server mode: its weight sync needs CUDA); pass "
            "--use_vllm false for transformers generation"
        )
    if _flag("ACCELERATE_USE_FSDP") and device == "cpu":
        raise RecipeError(
            f"the launch config uses FSDP, but this run is on CPU ({kind}): accelerate applies "
            "FSDP only on GPUs and would silently train with plain DDP; launch with "
            "launch/accelerate/ddp.yaml or torchrun on CPU"
        )


def launcher_argv() -> list[str] | None:
    """The command line of the process that started this one (``accelerate launch ...`` or
    ``torchrun ...``; both run torch's elastic agent, the parent of every rank)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    try:
        import psutil

        return list(psutil.Process().parent().cmdline())
    except Exception:  # the parent may be gone or unreadable; the record then says None
        return None


def accelerate_config_file(argv: list[str] | None) -> str | None:
    """``--config_file`` of the launcher's command line, else ``$ACCELERATE_CONFIG_FILE``."""
    for i, arg in enumerate(argv or []):
        if arg in ("--config_file", "--config-file") and i + 1 < len(argv or []):
            return (argv or [])[i + 1]
        if arg.startswith(("--config_file=", "--config-file=")):
            return arg.split("=", 1)[1]
    return os.environ.get("ACCELERATE_CONFIG_FILE")


def launch_record(config: Any) -> dict[str, Any]:
    """What ``grpo_gsm8k_config.json`` keeps about the launch."""
    import yaml

    state = config.distributed_state
    argv = launcher_argv()
    if argv and any("accelerate" in Path(a).name for a in argv[:3]):
        launcher = "accelerate"
    elif "TORCHELASTIC_RUN_ID" in os.environ:
        launcher = "torchrun"
    else:
        launcher = "none"
    config_path = accelerate_config_file(argv) if launcher == "accelerate" else None
    config_file: dict[str, Any] | None = None
    if config_path:
        p = Path(config_path)
        config_file = {"path": str(p.resolve()) if p.is_file() else config_path}
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            config_file["sha256"] = hashlib.sha256(text.encode()).hexdigest()
            config_file["settings"] = yaml.safe_load(text)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", config.world_size))
    return {
        "world_size": config.world_size,
        "local_world_size": local,
        "num_machines": max(1, config.world_size // max(local, 1)),
        "launcher": launcher,
        "launcher_argv": argv,
        "accelerate_config_file": config_file,
        "distributed_type": str(getattr(state, "distributed_type", "NO")).split(".")[-1],
        "backend": getattr(state, "backend", None),
        "batch": batch_arithmetic(config),
        "env": {k: v for k, v in sorted(os.environ.items()) if _launch_variable(k)},
    }


def _config_settings(record: dict[str, Any] | None) -> Any:
    return (record or {}).get("settings")


def check_resume_launch(config: Any, resume: bool) -> None:
    """On ``--resume``: the launch recorded in ``output_dir``'s ``grpo_gsm8k_config.json`` must
    have the same world size and accelerate config as this one (the global batch, and DeepSpeed
    or FSDP shards, depend on both), unless ``$GRPO_GSM8K_RESHARD`` is 1."""
    path = Path(str(config.output_dir)) / TRAIN_CONFIG
    if not resume or _flag(RESHARD_VARIABLE) or not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("launch") or {}
    except (OSError, ValueError, AttributeError):
        return  # an unreadable record is the resume's own business, not the launch's
    if not recorded:
        return
    changes = []
    if recorded.get("world_size") not in (None, config.world_size):
        changes.append(
            f"world size {recorded['world_size']} ({recorded.get('num_machines', '?')} node(s)) "
            f"-> {config.world_size}"
        )
    now = accelerate_config_file(launcher_argv())
    now_settings = None
    if now and Path(now).is_file():
        import yaml

        now_settings = yaml.safe_load(Path(now).read_text(encoding="utf-8"))
    before = _config_settings(recorded.get("accelerate_config_file"))
    if before != now_settings and (before is not None or now_settings is not None):
        name = (recorded.get("accelerate_config_file") or {}).get("path")
        was = Path(name).name if name else "none"
        changes.append(f"accelerate config {was} -> {now or 'none'}")
    if changes:
        raise RecipeError(
            f"--resume: {config.output_dir} was trained with another launch "
            f"({'; '.join(changes)}); "
            f"resume it with the same launch, or set {RESHARD_VARIABLE}=1 to re-shard (the global "
            "batch changes with the world size; DeepSpeed checkpoints need the same world size or "
            "a universal checkpoint)"
        )


def derive_accumulation(
    per_device: int, processes: int, num_generations: int, prompts_per_step: int
) -> int:
    """The gradient accumulation that gives ``prompts_per_step`` prompts per optimizer step on
    ``processes`` processes; a RecipeError with the arithmetic when none does."""
    completions = prompts_per_step * num_generations
    per_step = per_device * processes
    if completions % per_step:
        raise RecipeError(
            f"prompts_per_step {prompts_per_step} x num_generations {num_generations} = "
            f"{completions} completions per step is not a multiple of "
            f"per_device_train_batch_size {per_device} x {processes} process(es) = {per_step}; "
            "change per_device_train_batch_size, prompts_per_step or the number of nodes/GPUs"
        )
    return completions // per_step


def tensor_parallel_default(heads: int, gpus: int) -> int:
    """The largest tensor parallel size vLLM accepts on ``gpus`` GPUs: the largest divisor of
    the attention heads that is at most ``gpus``."""
    return max(d for d in range(1, min(heads, gpus) + 1) if heads % d == 0)


class SaveOnSignal(TrainerCallback):
    """Saves a checkpoint at the end of the step during which ``SIGUSR1`` arrived (Slurm's
    ``--signal=USR1@T`` before the time limit). Every rank takes the decision of rank 0...N
    together (an all-reduce of one flag per step), since saving is collective."""

    def __init__(self, signum: int = signal.SIGUSR1) -> None:
        self.signum = signum
        self.requested = False
        with contextlib.suppress(ValueError):  # only the main thread may install a handler
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def _any_rank_requested(self, args: Any) -> bool:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
        if self._any_rank_requested(args):
            self.requested = False
            control.should_save = True
            if state.is_world_process_zero:
                print(f"signal {self.signum}: saving checkpoint-{state.global_step}", flush=True)
        return control
