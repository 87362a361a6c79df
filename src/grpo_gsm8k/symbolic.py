"""GSM-Symbolic as an eval source: GSM8K-style questions whose names and numbers are re-drawn from
templates (Mirzadeh et al., 2024), generated offline with the ``reasoning-gym`` package.

reasoning-gym's ``gsm_symbolic`` dataset holds generators for GSM8K test problems; each draws
the names and numbers of its template from a seeded ``random.Random`` and writes the question,
the final number and a chain of thought ending in ``#### N``. :func:`generate` turns ``count`` of
them into prepared rows (the schema of GSM8K ``prepare``):

- ``id``: ``symbolic-t017-0003`` (template 17, the item's index 3 in the generated set);
- ``question``: the generator's question without the sentence reasoning-gym appends to it
  ("Give the result as your final answer. Do not include units."), so that the prompt's own
  answer instruction is the only one, as for GSM8K;
- ``answer``: the chain of thought, ending in ``#### N``;
- ``gold``: N as our grader reads it from that line (a string without commas), which must equal
  the generator's own final number.

The set is a function of ``seed`` and ``difficulty`` alone: the same seed gives the same bytes,
and ``count`` N gives the first N rows of any larger count. reasoning-gym 0.1.25 accepts only
difficulty 1.0 (its config refuses anything else); its generators scale their number ranges with
the difficulty, and at 2.0 some templates state percentages over 100%.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .data import DataError, Example
from .grading import parse_gold, same_number

SOURCE = "gsm-symbolic"
DEFAULT_OUT = "data/gsm-symbolic"
DEFAULT_COUNT = 500
DEFAULT_SEED = 0
DIFFICULTIES = (1.0,)  # what reasoning-gym's GSMSymbolicDatasetConfig.validate accepts
SUFFIX = " Give the result as your final answer. Do not include units."


@dataclass(frozen=True)
class SymbolicSettings:
    """What a GSM-Symbolic set is generated from."""

    count: int = DEFAULT_COUNT
    seed: int = DEFAULT_SEED
    difficulty: float = 1.0

    def check(self) -> None:
        if self.count < 1:
            raise DataError(f"--count must be a positive number of questions, got {self.count}")
        if self.seed < 0:
            raise DataError(f"--seed must be >= 0, got {self.seed}")
        if self.difficulty not in DIFFICULTIES:
            allowed = ", ".join(str(d) for d in DIFFICULTIES)
            raise DataError(
                f"--difficulty {self.difficulty}: reasoning-gym {package_version()} generates "
                f"GSM-Symbolic at difficulty {allowed} only"
            )


def package_version() -> str:
    try:
        return version("reasoning-gym")
    except PackageNotFoundError:
        raise DataError(
            "--source gsm-symbolic needs the reasoning-gym package (pip install reasoning-gym)"
        ) from None


def _dataset(settings: SymbolicSettings) -> Any:
    package_version()
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import (
        GSMSymbolicDataset,
        GSMSymbolicDatasetConfig,
    )

    config = GSMSymbolicDatasetConfig(
        difficulty=settings.difficulty, seed=settings.seed, size=settings.count
    )
    config.validate()
    return GSMSymbolicDataset(config)


def to_example(item: dict[str, Any], template: int, index: int) -> Example:
    """One reasoning-gym item as a prepared row; its gold read by our grader from the ``#### N``
    line must equal the generator's own answer."""
    where = f"gsm-symbolic template {template}, item {index}"
    question = item["question"]
    if not question.endswith(SUFFIX):
        raise DataError(f"{where}: the question does not end with {SUFFIX.strip()!r}")
    chain = item["metadata"]["answer_cot"]
    try:
        gold = parse_gold(chain)
    except ValueError:
        raise DataError(f"{where}: the chain of thought has no final '#### N' line") from None
    if not same_number(gold, parse_gold(str(item["answer"]))):
        raise DataError(f"{where}: '#### {gold}' differs from the answer {item['answer']!r}")
    return Example(f"symbolic-t{template:03d}-{index:04d}", question[: -len(SUFFIX)], chain, gold)


def generate(settings: SymbolicSettings) -> list[Example]:
    """``settings.count`` GSM-Symbolic questions as prepared rows (deterministic per seed)."""
    settings.check()
    dataset = _dataset(settings)
    return [to_example(dataset[i], dataset.task_indices[i], i) for i in range(settings.count)]


def prepare_symbolic(out_dir: str | os.PathLike[str], settings: SymbolicSettings) -> dict[str, Any]:
    """Write ``eval.jsonl`` and ``manifest.json`` (reasoning-gym's version, seed, difficulty,
    count, templates used, sha256, provenance) to ``out_dir``; return the manifest."""
    from . import __version__
    from .runfiles import fingerprint, output_dir, provenance, write_json, write_jsonl

    examples = generate(settings)  # every check before anything is written
    out = output_dir(out_dir)
    write_jsonl(Path(out) / "eval.jsonl", (e.to_row() for e in examples))
    manifest = {
        "source": SOURCE,
        "generator": "reasoning-gym gsm_symbolic",
        "reasoning_gym_version": package_version(),
        "seed": settings.seed,
        "difficulty": settings.difficulty,
        "count": settings.count,
        "templates": len({e.id.split("-")[1] for e in examples}),
        "question_suffix_removed": SUFFIX.strip(),
        "rows": {"eval.jsonl": len(examples)},
        "sha256": {"eval.jsonl": fingerprint(out / "eval.jsonl")["sha256"]},
        "grpo_gsm8k_version": __version__,
        **provenance(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
