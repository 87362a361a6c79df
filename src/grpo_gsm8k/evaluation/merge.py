"""``grpo-gsm8k merge``: combine the shards of one eval (``eval --shard I/N``) into one run.

Shard ``I`` of ``N`` holds questions ``I, I+N, I+2N, ...`` of the (``--limit``-ed) data file, so
question ``j`` is row ``j // N`` of shard ``j % N``. The merged ``samples.jsonl`` interleaves the
shards back into the data order, and ``summary.json`` is computed by the same function as a
single-process eval: same ids, completions and metrics. Timing fields add up the shards'
generation time (``generation_s``) and model loads (``model_load_s``).

Refused, with a one-line error: a folder that is not a finished shard, shards of different
evals (model, data, prompt, decoding, backend or limit differ), a shard given twice or missing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from ..runfiles import provenance, read_json, read_jsonl, write_json, write_jsonl
from .evaluate import EvalError, parse_shard, print_summary, summarize

# what must be equal across the shards of one eval (besides identity, which holds the shard)
SAME = ("backend", "model_path", "prompt_style", "decoding")


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
    if not (path / "summary.json").is_file():
        raise MergeError(f"{folder}: no summary.json (the shard has not finished; rerun its eval)")
    summary = read_json(path / "summary.json")
    shard = parse_shard(summary.get("data", {}).get("shard"))
    if shard is None:
        raise MergeError(f"{folder}: not a shard (its eval ran without --shard I/N)")
    rows = [row for _, row in read_jsonl(path / "samples.jsonl")]
    if len(rows) != summary["n"]:
        raise MergeError(
            f"{folder}/samples.jsonl: {len(rows)} rows but summary.json says n={summary['n']}"
        )
    return {"dir": folder, "summary": summary, "rows": rows, "index": shard[0], "count": shard[1]}


def _settings(summary: dict[str, Any]) -> dict[str, Any]:
    identity = {k: v for k, v in summary.get("identity", {}).items() if k != "shard"}
    data = summary.get("data", {})
    return {
        **{k: summary.get(k) for k in SAME},
        "identity": identity,
        "data_sha256": data.get("sha256"),
        "limit": data.get("limit"),
    }


def check_shards(shards: list[dict[str, Any]]) -> int:
    """The shard count N after checking that ``shards`` are shards 0..N-1 of one eval."""
    first = shards[0]
    reference = _settings(first["summary"])
    for s in shards[1:]:
        settings = _settings(s["summary"])
        diff = [k for k in reference if settings[k] != reference[k]]
        if diff:
            raise MergeError(
                f"{s['dir']}: not the same eval as {first['dir']} ({', '.join(diff)} differ)"
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


def merge_shards(config: MergeConfig) -> dict[str, Any]:
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

    first = shards[0]["summary"]
    load_times = [s["summary"].get("model_load_s") for s in shards]
    identity = {**first["identity"], "shard": None}
    summary = {
        "model": first["model"],
        "model_path": first["model_path"],
        "model_source": first.get("model_source"),
        "backend": first["backend"],
        "hardware": first.get("hardware"),
        "out": str(final),
        **summarize(rows),
        "resumed_rows": sum(s["summary"].get("resumed_rows", 0) for s in shards),
        "model_load_s": sum(t for t in load_times if t is not None) if any(load_times) else None,
        "total_s": max(s["summary"].get("total_s", 0.0) for s in shards),
        "decoding": first["decoding"],
        "prompt_style": first["prompt_style"],
        "backend_settings": first.get("backend_settings"),
        "identity": identity,
        **provenance(
            data={**first["data"], "shard": None}, prompt_template=first.get("prompt_template")
        ),
        "merged_from": [
            {
                "dir": str(Path(s["dir"]).resolve()),
                "shard": f"{s['index']}/{count}",
                "n": len(s["rows"]),
                "generation_s": s["summary"].get("generation_s"),
                "versions": s["summary"].get("versions"),
                "machine": s["summary"].get("machine"),
            }
            for s in sorted(shards, key=lambda s: s["index"])
        ],
    }

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        write_jsonl(tmp / "samples.jsonl", rows)
        write_json(tmp / "run.json", identity)
        write_json(tmp / "summary.json", summary)
        if final.exists():
            final.rmdir()
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print_summary(summary)
    return summary
