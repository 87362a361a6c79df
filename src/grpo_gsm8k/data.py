"""GSM8K data: load the raw splits (hub or local files), write prepared train/eval JSONL, and
read prepared files back.

:func:`load_gsm8k_split` reads GSM8K as published (``question``/``answer`` rows, hub or local
JSONL/parquet); :func:`load_prepared` reads what ``prepare`` wrote (``id``/``question``/
``answer``/``gold``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError
from .grading import parse_gold
from .runfiles import (
    fingerprint,
    looks_like_path,
    output_dir,
    provenance,
    read_jsonl,
    write_json,
    write_jsonl,
)

HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"
DEFAULT_EVAL_SIZE = 500  # the first 500 test questions, as in the published results


class DataError(UserError):
    """Bad input data; the message names the file, line and field."""


def require_str(row: dict[str, Any], field: str, where: str) -> str:
    """``row[field]`` as a non-empty string, else DataError naming ``where`` and the field."""
    value = row.get(field)
    if value is None:
        raise DataError(f"{where}: missing field '{field}'")
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{field}' must be a non-empty string")
    return value


# ----------------------------------------------------------------------------------- loading


@dataclass
class Example:
    id: str
    question: str
    answer: str
    gold: str

    def to_row(self) -> dict[str, str]:
        return {"id": self.id, "question": self.question, "answer": self.answer, "gold": self.gold}


def _split_file(folder: Path, split: str) -> Path:
    candidates = [
        *sorted(folder.glob(f"{split}.jsonl")),
        *sorted(folder.glob(f"{split}.parquet")),
        *sorted(folder.glob(f"**/{split}-*.parquet")),
    ]
    if not candidates:
        raise DataError(f"{folder}: no '{split}' split (expected {split}.jsonl or {split}.parquet)")
    return candidates[0]


def _local_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)`` from a JSONL or parquet file; ``where`` is 'file:line'."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            reason = " ".join(str(e).split())[:120]
            raise DataError(f"{path}: not a readable parquet file ({reason})") from None
        for i, row in enumerate(table.to_pylist(), 1):
            yield f"{path}:row {i}", row
    else:
        for lineno, row in read_jsonl(path):
            yield f"{path}:{lineno}", row


def _hub_rows(source: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import datasets

    try:
        ds = datasets.load_dataset(source, HUB_CONFIG, split=split)
    except Exception as e:
        raise DataError(
            f"couldn't load '{source}' ({HUB_CONFIG}/{split}) from the Hugging Face Hub "
            f"({type(e).__name__}); pass --source with a local folder of train/test JSONL or "
            "parquet files, e.g. --source ../shared/data/gsm8k"
        ) from None
    for i, row in enumerate(ds, 1):
        yield f"{source}[{split}]:row {i}", dict(row)


def load_gsm8k_split(source: str, split: str) -> list[Example]:
    """Load one GSM8K split (``train``/``test``) from a local folder/file or the hub."""
    path = Path(source).expanduser()
    if path.is_dir():
        rows = _local_rows(_split_file(path, split))
    elif path.is_file():
        rows = _local_rows(path)
    elif looks_like_path(source):
        raise DataError(f"{source}: no such file or folder")
    else:
        rows = _hub_rows(source, split)
    examples = []
    for i, (where, row) in enumerate(rows):
        question = require_str(row, "question", where)
        answer = require_str(row, "answer", where)
        try:
            gold = parse_gold(answer)
        except ValueError:
            raise DataError(f"{where}: field 'answer' has no final '#### <number>'") from None
        examples.append(Example(f"{split}-{i:04d}", question, answer, gold))
    if not examples:
        raise DataError(f"{source}: the '{split}' split is empty")
    return examples


def load_prepared(path: str | os.PathLike[str]) -> list[Example]:
    """Read a prepared JSONL file (rows with id, question, answer, gold); an id given twice is
    refused (a question counted twice skews every rate)."""
    examples = []
    seen: dict[str, int] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        question = require_str(row, "question", where)
        answer = require_str(row, "answer", where)
        gold = row.get("gold")
        if gold is None:
            try:
                gold = parse_gold(answer)
            except ValueError:
                raise DataError(f"{where}: field 'answer' has no final number") from None
        try:  # "1,080" or "$18" would grade everything wrong: canonicalise ("1080", "18")
            gold = parse_gold(str(gold))
        except ValueError:
            raise DataError(f"{where}: field 'gold' is not a number: {str(gold)[:40]!r}") from None
        example_id = str(row.get("id", f"row-{lineno}"))
        if example_id in seen:
            raise DataError(
                f"{where}: duplicate id {example_id!r} (also on line {seen[example_id]})"
            )
        seen[example_id] = lineno
        examples.append(Example(example_id, question, answer, str(gold)))
    if not examples:
        raise DataError(f"{path}: no rows")
    return examples


# ----------------------------------------------------------------------------------- prepare


def prepare(source: str, out_dir: str | os.PathLike[str], eval_size: int | None) -> dict[str, Any]:
    """Write ``train.jsonl``, ``eval.jsonl`` and ``manifest.json`` to ``out_dir``.

    ``eval_size`` takes the first N test rows (None: all). Returns the manifest.
    """
    if eval_size is not None and eval_size < 1:
        raise DataError(f"--eval-size must be at least 1, got {eval_size}")
    train = load_gsm8k_split(source, "train")
    test = load_gsm8k_split(source, "test")
    if eval_size is not None:
        if eval_size > len(test):
            raise DataError(
                f"--eval-size {eval_size}: the test split has {len(test)} questions "
                "(use --eval-size all for every one)"
            )
        test = test[:eval_size]
    out = output_dir(out_dir)
    files = {"train.jsonl": train, "eval.jsonl": test}
    others = sorted(p.name for p in out.iterdir() if p.name not in {*files, "manifest.json"})
    if others:
        print(f"note: {out} also holds {', '.join(others)}, which prepare did not write")
    for name, examples in files.items():
        write_jsonl(out / name, (e.to_row() for e in examples))
    manifest = {
        "source": source,
        "config": HUB_CONFIG,
        "eval_split": f"test[:{eval_size}]" if eval_size is not None else "test",
        "rows": {name: len(examples) for name, examples in files.items()},
        "sha256": {name: fingerprint(out / name)["sha256"] for name in files},
        "grpo_gsm8k_version": __version__,
        **provenance(),
    }
    write_json(out / "manifest.json", manifest)
    return manifest
