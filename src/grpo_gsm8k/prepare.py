"""``grpo-gsm8k prepare``: the command that writes prepared files, from GSM8K
(:func:`grpo_gsm8k.data.prepare`) or from GSM-Symbolic's generators
(:func:`grpo_gsm8k.symbolic.prepare_symbolic`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .data import DEFAULT_EVAL_SIZE, HUB_DATASET, DataError, prepare
from .symbolic import DEFAULT_OUT, SOURCE, SymbolicSettings, prepare_symbolic


@dataclass
class PrepareConfig:
    """Options of ``grpo-gsm8k prepare``: load GSM8K (hub or local files) and write train.jsonl,
    eval.jsonl and manifest.json (source, row counts, sha256 of each file, provenance); or, with
    ``--source gsm-symbolic``, generate GSM-Symbolic questions (reasoning-gym's templates) and
    write them as eval.jsonl and manifest.json."""

    source: str = field(
        default=HUB_DATASET,
        metadata={
            "help": "hub dataset id (config 'main'), a local folder/file with train/test "
            "splits as JSONL or parquet (e.g. ../shared/data/gsm8k), or gsm-symbolic"
        },
    )
    out: str | None = field(
        default=None,
        metadata={"help": "output folder (default: data; data/gsm-symbolic for gsm-symbolic)"},
    )
    eval_size: str | None = field(
        default=None,
        metadata={
            "help": "GSM8K: eval split = the first N test questions, or 'all' (default 500: as "
            "in the published results)"
        },
    )
    count: int | None = field(
        default=None,
        metadata={
            "help": "gsm-symbolic: questions to generate (default 500; N gives the first N "
            "of any larger count with the same seed)"
        },
    )
    seed: int | None = field(
        default=None, metadata={"help": "gsm-symbolic: generator seed (default 0)"}
    )
    difficulty: float | None = field(
        default=None,
        metadata={"help": "gsm-symbolic: reasoning-gym's difficulty (default 1.0, its only one)"},
    )


def run(config: PrepareConfig) -> dict[str, Any]:
    """``grpo-gsm8k prepare``: :func:`.data.prepare` (GSM8K) or :func:`.symbolic.prepare_symbolic`,
    then say what was written."""
    if config.source == SOURCE:
        return _run_prepare_symbolic(config)
    given = [f"--{k}" for k in ("count", "seed", "difficulty") if getattr(config, k) is not None]
    if given:
        raise DataError(f"{', '.join(given)}: only with --source {SOURCE}")
    size = config.eval_size or str(DEFAULT_EVAL_SIZE)
    if size != "all" and not (size.isdigit() and int(size) > 0):
        raise DataError(f"--eval-size: expected a positive integer or 'all', got {size!r}")
    out = config.out or "data"
    manifest = prepare(config.source, out, None if size == "all" else int(size))
    rows = manifest["rows"]
    print(f"wrote {out}/train.jsonl ({rows['train.jsonl']} rows)")
    print(f"wrote {out}/eval.jsonl ({rows['eval.jsonl']} rows, {manifest['eval_split']})")
    print(f"wrote {out}/manifest.json")
    return manifest


def _run_prepare_symbolic(config: PrepareConfig) -> dict[str, Any]:
    if config.eval_size is not None:
        raise DataError(f"--eval-size: GSM8K only; --source {SOURCE} takes --count")
    given = {k: getattr(config, k) for k in ("count", "seed", "difficulty")}
    settings = SymbolicSettings(**{k: v for k, v in given.items() if v is not None})
    out = config.out or DEFAULT_OUT
    manifest = prepare_symbolic(out, settings)
    print(
        f"wrote {out}/eval.jsonl ({manifest['count']} GSM-Symbolic questions from "
        f"{manifest['templates']} templates, seed {manifest['seed']}, difficulty "
        f"{manifest['difficulty']}, reasoning-gym {manifest['reasoning_gym_version']})"
    )
    print(f"wrote {out}/manifest.json")
    return manifest
