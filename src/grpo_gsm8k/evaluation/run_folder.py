"""An eval's run folder: opening it to start, resume or refuse, before any model loads.

A new folder gets ``run.json``, the run's identity (:data:`.summary.IDENTITY_FIELDS`: every
setting that changes its rows). A folder that holds a run is resumed only by the same identity:
its finished rows (``samples.jsonl``, a torn last line dropped) are kept and only the other
questions are generated. Another identity is refused in one line naming the fields that differ,
with nothing changed on disk, so fp32 and bf16 rows, or rows of two models, never mix; and a
finished run (``summary.json``: a single eval or a merge of shards, with its ``merged_from``) is
never rewritten by a different one. The same finished run is reprinted, not recomputed.

:func:`model_sha256` is the model's part of the identity.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Example
from ..errors import UserError
from ..runfiles import (
    RUN_IDENTITY,
    SAMPLES,
    SUMMARY,
    output_dir,
    read_json,
    read_jsonl,
    write_json,
)
from .summary import diff_text, identity_diff

# the files of a checkpoint folder that are hashed whole (small) and sampled (the weights)
SMALL_FILES = ("config.json", "generation_config.json", "*.index.json", "tokenizer*", "*.jinja")
WEIGHT_FILES = ("*.safetensors", "*.bin")
BLOCKS, BLOCK = 16, 1 << 16  # 16 blocks of 64 KiB, evenly spaced, per weight file


class EvalError(UserError):
    """Inconsistent eval settings or a run folder that cannot be resumed; one-line message."""


def model_sha256(path: str | os.PathLike[str]) -> str:
    """A checkpoint folder's fingerprint, cheap enough for a many-GB model and real: sha256 over
    the config, generation config, weight index and tokenizer files in full, and, for each
    weight file, its name, size and 16 evenly spaced 64 KiB blocks (1 MiB read per file).
    Training changes every weight, so a retrained checkpoint in the same folder changes the
    blocks; two copies of one checkpoint hash the same wherever they are."""
    folder = Path(path)
    digest = hashlib.sha256()
    small = sorted({p for pattern in SMALL_FILES for p in folder.glob(pattern) if p.is_file()})
    for p in small:
        digest.update(f"{p.name}\0".encode())
        digest.update(p.read_bytes())
    weights = sorted({p for pattern in WEIGHT_FILES for p in folder.glob(pattern) if p.is_file()})
    for p in weights:
        size = p.stat().st_size
        digest.update(f"{p.name}\0{size}\0".encode())
        with p.open("rb") as f:
            for i in range(BLOCKS):
                f.seek(max(0, size - BLOCK) * i // (BLOCKS - 1))
                digest.update(f.read(BLOCK))
    return digest.hexdigest()


@dataclass
class RunFolder:
    """An opened run folder: ``rows`` are the finished rows (generation appends to the list),
    ``finished`` the summary when the same run is already complete."""

    path: Path
    identity: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    finished: dict[str, Any] | None = None
    made: bool = False  # this process created the folder

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    def todo(self, examples: list[Example]) -> list[Example]:
        done = {r["id"] for r in self.rows}
        return [e for e in examples if e.id not in done]

    def discard_if_empty(self) -> None:
        """Leave no run folder behind when nothing was generated (the model did not load)."""
        if self.rows:
            return
        (self.path / RUN_IDENTITY).unlink(missing_ok=True)
        if self.made and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


def recorded_identities(path: Path) -> list[dict[str, Any]]:
    """The identities a folder records (run.json's and a finished summary's); none for a folder
    with no run. A run without a record (samples.jsonl only) is refused: it cannot be checked."""
    found = []
    if (path / RUN_IDENTITY).is_file():
        found.append(read_json(path / RUN_IDENTITY))
    if (path / SUMMARY).is_file():
        identity = read_json(path / SUMMARY).get("identity")
        if not isinstance(identity, dict):
            raise EvalError(
                f"{path}: holds a finished run without a recorded identity (summary.json has no "
                "'identity'); pass another --out"
            )
        found.append(identity)
    if not found and (path / SAMPLES).is_file():
        raise EvalError(
            f"{path}: holds samples.jsonl but no run.json, so its settings are unknown; pass "
            "another --out or delete that folder"
        )
    return found


def open_run(path: Path, identity: dict[str, Any], wanted: set[str]) -> RunFolder:
    """Start, resume or refuse the run folder ``path`` for a run of ``identity`` over the
    question ids ``wanted``. Refusals change nothing on disk."""
    recorded = recorded_identities(path) if path.is_dir() else []
    for previous in recorded:
        diff = identity_diff(previous, identity)
        if diff:
            raise EvalError(
                f"{path} holds a run with other settings "
                f"{diff_text(previous, identity, diff, ('recorded', 'now'))}; "
                "pass another --out or delete that folder"
            )
    run = RunFolder(path, identity, made=not path.exists())
    if (path / SAMPLES).is_file():
        run.rows = [row for _, row in read_jsonl(path / SAMPLES, torn_tail="drop")]
    complete = wanted <= {r["id"] for r in run.rows}
    if complete and (path / SUMMARY).is_file():
        summary = read_json(path / SUMMARY)
        if summary.get("n") == len(wanted):
            run.finished = summary
            return run
    output_dir(path)
    if not (path / RUN_IDENTITY).is_file():
        write_json(path / RUN_IDENTITY, identity)
    return run
