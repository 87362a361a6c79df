"""``grpo-gsm8k merge``: combine the shards of one eval (``eval --shard I/N``) into one run.

Shard ``I`` of ``N`` holds questions ``I, I+N, I+2N, ...`` of the (``--limit``-ed) data file, so
question ``j`` is row ``j // N`` of shard ``j % N``. The merged ``samples.jsonl`` interleaves the
shards back into the data order, and ``summary.json`` is computed by the same function as a
single-process eval: same ids, completions and metrics. Timing fields add up the shards'
generation time (``generation_s``) and model loads (``model_load_s``).

Refused, with a one-line error: a folder that is not a finished shard, a shard whose
``summary.json`` lacks a field merge reads (naming the file and the field), shards of different
evals (any field of the run's identity but the shard differs: model and its hash, backend,
dtype, prompt, decoding, data, limit), a shard given twice or missing. A full disk leaves no
merged folder and the shards as they were.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from ..runfiles import RUN_IDENTITY, SAMPLES, SUMMARY, read_jsonl, write_json, write_jsonl
from .evaluate import EvalError, parse_shard
from .summary import (
    IDENTITY_FIELDS,
    EvalSummary,
    build_summary,
    diff_text,
    identity_diff,
    print_summary,
    read_summary,
)

# what merge reads of each shard's summary.json
NEEDED = (
    "model",
    "model_path",
    "backend",
    "n",
    "decoding",
    "prompt_style",
    "data.shard",
    *(f"identity.{k}" for k in IDENTITY_FIELDS),
)


@dataclasses.dataclass
class MergeConfig:
    """Options of ``grpo-gsm8k merge``: combine the N shard folders of one eval (``eval --shard
    I/N``, e.g. a Slurm job array) into the run one process would have written."""

    positional: ClassVar[tuple[str, ...]] = ("shards",)

    out: str = dataclasses.field(
        metadata={"help": "output folder for the merged run (new or empty)"}
    )
    shards: list[str] = dataclasses.field(
        default_factory=list, metadata={"help": "eval output folders, one per shard"}
    )


class MergeError(EvalError):
    """Shards that do not make up one eval; one-line message."""


def _load(folder: str) -> dict[str, Any]:
    path = Path(folder)
    if not path.is_dir():
        raise MergeError(f"{folder}: no such eval folder")
    if not (path / SUMMARY).is_file():
        raise MergeError(f"{folder}: no summary.json (the shard has not finished; rerun its eval)")
    summary = read_summary(path, NEEDED)
    try:
        shard = parse_shard(summary["data"]["shard"])
    except (EvalError, TypeError):
        raise MergeError(f"{path / SUMMARY}: field 'data.shard' is not I/N") from None
    if shard is None:
        raise MergeError(f"{folder}: not a shard (its eval ran without --shard I/N)")
    rows = [row for _, row in read_jsonl(path / SAMPLES)]
    if len(rows) != summary["n"]:
        raise MergeError(
            f"{folder}/{SAMPLES}: {len(rows)} rows but summary.json says n={summary['n']}"
        )
    return {"dir": folder, "summary": summary, "rows": rows, "index": shard[0], "count": shard[1]}


def _unsharded(summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary["identity"], "shard": None}


def check_shards(shards: list[dict[str, Any]]) -> int:
    """The shard count N after checking that ``shards`` are shards 0..N-1 of one eval."""
    first = shards[0]
    reference = _unsharded(first["summary"])
    for s in shards[1:]:
        identity = _unsharded(s["summary"])
        diff = identity_diff(reference, identity)
        if diff:
            raise MergeError(
                f"{s['dir']}: not the same eval as {first['dir']} "
                f"{diff_text(reference, identity, diff, (first['dir'], 'this shard'))}"
            )
    counts = {s["count"] for s in shards}
    if len(counts) > 1:
        splits = ", ".join(f"/{c}" for c in sorted(counts))
        raise MergeError(f"shards of different splits: {splits}")
    count = counts.pop()
    seen: dict[int, str] = {}
    for s in shards:
        if s["index"] in seen:
            raise MergeError(
                f"{seen[s['index']]} and {s['dir']} are both shard {s['index']}/{count}"
            )
        seen[s["index"]] = s["dir"]
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        raise MergeError(f"missing shard(s) {', '.join(missing)}")
    ids: dict[str, str] = {}
    for s in shards:
        for row in s["rows"]:
            if row["id"] in ids:
                raise MergeError(f"question {row['id']} is in both {ids[row['id']]} and {s['dir']}")
            ids[row["id"]] = s["dir"]
    total = len(ids)
    sizes = [len(s["rows"]) for s in sorted(shards, key=lambda s: s["index"])]
    if sizes != [-(-(total - i) // count) for i in range(count)]:  # ceil((total - I) / N)
        raise MergeError(
            f"shards 0..{count - 1} hold {', '.join(map(str, sizes))} questions: not one split "
            f"of {total} (shard I/N holds every N-th question from I)"
        )
    return count


def run(config: MergeConfig) -> EvalSummary:
    """Write ``out``/samples.jsonl, run.json and summary.json from the shard folders; return the
    summary."""
    final = Path(config.out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise MergeError(f"{config.out}: already exists and is not empty")
    shards = [_load(d) for d in config.shards]
    count = check_shards(shards)
    by_index = {s["index"]: s for s in shards}
    total = sum(len(s["rows"]) for s in shards)
    rows = [by_index[j % count]["rows"][j // count] for j in range(total)]
    summary = merged_summary(shards, rows, final, count)
    try:
        publish(final, rows, summary)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise MergeError(
            f"{final}: no space left on the device; nothing was written and the {count} shard "
            f"folders keep all {total} questions: free some space and rerun the same command"
        ) from None
    print_summary(summary)
    return summary


def merged_summary(
    shards: list[dict[str, Any]], rows: list[dict[str, Any]], final: Path, count: int
) -> EvalSummary:
    """The summary one process would have written, with the shards' timing added up and the
    shard folders in ``merged_from``."""
    first = shards[0]["summary"]
    ordered = sorted(shards, key=lambda s: s["index"])
    load_times = [_seconds(s["summary"].get("model_load_s")) for s in shards]
    return build_summary(
        rows,
        setup={**first, "identity": _unsharded(first)},
        out=final,
        resumed_rows=sum(int(_seconds(s["summary"].get("resumed_rows")) or 0) for s in shards),
        model_load_s=sum(t for t in load_times if t is not None) if any(load_times) else None,
        total_s=max(_seconds(s["summary"].get("total_s")) or 0.0 for s in shards),
        data={**first.get("data", {}), "shard": None},
        prompt_template=first["identity"]["prompt_template"],
        merged_from=[
            {
                "dir": str(Path(s["dir"]).resolve()),
                "shard": f"{s['index']}/{count}",
                "n": len(s["rows"]),
                "generation_s": s["summary"].get("generation_s"),
                "versions": s["summary"].get("versions"),
                "machine": s["summary"].get("machine"),
            }
            for s in ordered
        ],
    )


def _seconds(value: Any) -> float | None:
    """A timing field of a shard's summary, None when it is not a number."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def publish(final: Path, rows: list[dict[str, Any]], summary: EvalSummary) -> None:
    """The merged run folder, written whole in a temp folder and renamed into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        write_jsonl(tmp / SAMPLES, rows)
        write_json(tmp / RUN_IDENTITY, summary["identity"])
        write_json(tmp / SUMMARY, summary)
        if final.exists():
            final.rmdir()
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
