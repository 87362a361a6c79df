"""``grpo-gsm8k filter RUN --out DIR``: a difficulty-filtered training set from a sampling eval.

An eval with ``--samples K`` over a prepared file (``eval --data data/train.jsonl --samples 8``)
grades K completions per question. This keeps the questions the model solved *sometimes*: those
with ``min_correct <= c <= max_correct`` correct completions, by default ``1 <= c <= K - 1``
(0 < pass@K < 1), counted with the flexible verdicts the summary's ``accuracy`` and ``pass@k``
report (``--mode strict`` for the other). It writes them to ``DIR/train.jsonl``, rows, schema and
order of the prepared file, and ``DIR/manifest.json``: the run, its model, K, the bounds, the
counts (questions seen, kept, dropped as never solved, as always solved, as outside narrower
bounds), how many questions had each c, sha256 of the input and output files, provenance.

The prepared file is the one the run's ``summary.json`` records (``data.path``; ``--data`` when
that path is not found from here), and its sha256 must be the recorded one. Refused in one line
before anything is written: a folder that is not a finished eval, a greedy or one-sample run, one
shard of an eval, a changed data file, bounds outside 0..K, an output folder holding the data
file itself, and a filter that keeps no question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from . import __version__
from .data import Example, load_prepared
from .errors import UserError
from .evaluation.summary import read_summary
from .runfiles import (
    MANIFEST,
    SAMPLES,
    SUMMARY,
    TRAIN_DATA,
    check_output_dir,
    fingerprint,
    output_dir,
    provenance,
    read_jsonl,
    sha256_file,
    write_json,
    write_jsonl,
)

# what the filter reads of the run's summary.json
NEEDED = (
    "model",
    "n",
    "decoding.n",
    "decoding.temperature",
    "data.path",
    "data.sha256",
    "data.shard",
    "identity.model_sha256",
)


class FilterError(UserError):
    """A run or setting the difficulty filter cannot use; one-line message."""


@dataclass
class FilterConfig:
    """Options of ``grpo-gsm8k filter``: keep the questions of a prepared file that a sampling
    eval (``eval --data FILE --samples K``) solved sometimes, min-correct <= c <= max-correct of
    its K completions correct (default 1 <= c <= K-1: 0 < pass@K < 1), and write them as
    train.jsonl (the prepared file's rows and order) with a manifest.json recording the filter."""

    positional: ClassVar[tuple[str, ...]] = ("run",)

    run: str = field(
        metadata={"help": "a finished eval folder of a --samples K run (K >= 2) on a prepared file"}
    )
    out: str = field(metadata={"help": "output folder for train.jsonl and manifest.json"})
    min_correct: int = field(
        default=1,
        metadata={"help": "keep questions with at least this many correct completions"},
    )
    max_correct: int | None = field(
        default=None,
        metadata={"help": "keep questions with at most this many correct completions (None: K-1)"},
    )
    mode: Literal["flexible", "strict"] = field(
        default="flexible",
        metadata={"help": "whose verdicts count: flexible (the summary's accuracy) or strict"},
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "the prepared file the run was made on, where the path its summary.json "
            "records is not found from here (its sha256 must still match)"
        },
    )


@dataclass
class SamplingRun:
    """A finished ``--samples K`` eval: its folder, summary, K and, per question id (in the
    run's order), how many of its K completions are correct."""

    path: Path
    summary: dict[str, Any]
    k: int
    correct: dict[str, int]

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES


def read_run(folder: str, mode: str) -> SamplingRun:
    """The sampling run in ``folder``; a FilterError when it is not a finished ``--samples K``
    eval of a whole (unsharded) data file."""
    path = Path(folder)
    if not path.is_dir():
        raise FilterError(f"{folder}: no such eval folder")
    if not (path / SUMMARY).is_file():
        raise FilterError(
            f"{folder}: no {SUMMARY} (not a finished eval; rerun its eval with the same --out)"
        )
    summary = read_summary(path, NEEDED)
    k = sampled_completions(path / SUMMARY, summary)
    correct = count_correct(path / SAMPLES, k, mode)
    if len(correct) != summary["n"]:
        raise FilterError(
            f"{path / SAMPLES}: {len(correct)} questions but {SUMMARY} says n={summary['n']}"
        )
    return SamplingRun(path, summary, k, correct)


def sampled_completions(where: Path, summary: dict[str, Any]) -> int:
    """K, the completions per question of the run whose summary is ``summary``; refuses a
    greedy or one-sample run and a shard."""
    decoding = summary["decoding"]
    k = decoding["n"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise FilterError(f"{where}: field 'decoding.n' must be a count, got {k!r}")
    if decoding.get("greedy") or decoding["temperature"] == 0:
        raise FilterError(
            f"{where}: a greedy run (field 'decoding.temperature' is 0: eval without --samples); "
            "the filter needs an eval with --samples K (K >= 2) and a temperature"
        )
    if k < 2:
        raise FilterError(
            f"{where}: field 'decoding.n' is 1 (eval --samples 1); the filter needs K >= 2 "
            "completions per question"
        )
    shard = summary["data"]["shard"]
    if shard is not None:
        raise FilterError(
            f"{where}: shard {shard} of an eval (field 'data.shard'); filter the run that "
            "`grpo-gsm8k merge` makes of its shards"
        )
    return k


def count_correct(samples: Path, k: int, mode: str) -> dict[str, int]:
    """Per question id of ``samples`` (samples.jsonl), its number of correct completions under
    ``mode`` (the row's ``correct_<mode>`` list of K verdicts)."""
    key = f"correct_{mode}"
    counts: dict[str, int] = {}
    for lineno, row in read_jsonl(samples):
        where = f"{samples}:{lineno}"
        qid = row.get("id")
        if not isinstance(qid, str):
            raise FilterError(f"{where}: field 'id' must be a string")
        verdicts = row.get(key)
        if not (
            isinstance(verdicts, list)
            and len(verdicts) == k
            and all(isinstance(v, bool) for v in verdicts)
        ):
            raise FilterError(f"{where}: field '{key}' must be {k} true/false verdicts")
        if qid in counts:
            raise FilterError(f"{where}: question {qid!r} is in the run twice")
        counts[qid] = sum(verdicts)
    return counts


def bounds(config: FilterConfig, k: int) -> tuple[int, int]:
    """``(min_correct, max_correct)`` for a run of K completions per question."""
    low = config.min_correct
    high = k - 1 if config.max_correct is None else config.max_correct
    if high > k:
        raise FilterError(
            f"--max-correct {high}: the run has {k} completions per question (at most {k})"
        )
    if low > high:
        raise FilterError(f"--min-correct {low} is above --max-correct {high} (K={k})")
    return low, high


def source_file(sampling: SamplingRun, override: str | None) -> Path:
    """The prepared file the run was made on: the path its summary records (or ``override``),
    whose sha256 must be the recorded one."""
    where = sampling.path / SUMMARY
    recorded, sha = sampling.summary["data"]["path"], sampling.summary["data"]["sha256"]
    path = Path(override if override is not None else str(recorded))
    if not path.is_file():
        if override is not None:
            raise FilterError(f"--data {override}: file not found")
        raise FilterError(
            f"{where}: field 'data.path' is {recorded}, not found from here; run from the folder "
            "the eval ran in, or pass --data FILE"
        )
    actual = sha256_file(path)
    if actual != sha:
        raise FilterError(
            f"{path}: sha256 {actual[:12]}... is not the {str(sha)[:12]}... that {where} records "
            "(field 'data.sha256'): the file changed since the eval; rerun the eval on it"
        )
    return path


def select(
    sampling: SamplingRun, examples: list[Example], source: Path, low: int, high: int
) -> tuple[list[Example], dict[str, int]]:
    """The examples kept, in the prepared file's order, and the counts of the manifest."""
    correct, k = sampling.correct, sampling.k
    ids = {e.id for e in examples}
    missing = next((qid for qid in correct if qid not in ids), None)
    if missing is not None:
        raise FilterError(f"{sampling.samples}: question {missing!r} is not in {source}")
    kept = [e for e in examples if e.id in correct and low <= correct[e.id] <= high]
    dropped = [c for c in correct.values() if not low <= c <= high]
    counts = {
        "questions": len(correct),
        "kept": len(kept),
        "dropped_never_solved": dropped.count(0),
        "dropped_always_solved": dropped.count(k),
        "dropped_other": sum(0 < c < k for c in dropped),
    }
    return kept, counts


def run(config: FilterConfig) -> dict[str, Any]:
    """Write ``out``/train.jsonl and manifest.json; return the manifest. Every check comes first:
    a refusal leaves nothing written."""
    for name in ("min_correct", "max_correct"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise FilterError(f"--{name.replace('_', '-')} must be at least 0, got {value}")
    out = check_output_dir(config.out)
    sampling = read_run(config.run, config.mode)
    low, high = bounds(config, sampling.k)
    source = source_file(sampling, config.data)
    if (out / TRAIN_DATA).exists() and (out / TRAIN_DATA).samefile(source):
        raise FilterError(f"--out {config.out}: would overwrite {source}, the run's data file")
    kept, counts = select(sampling, load_prepared(source), source, low, high)
    rule = f"{low} <= correct <= {high} of {sampling.k} completions ({config.mode})"
    if not kept:
        raise FilterError(
            f"{sampling.path}: no question has {rule}: of {counts['questions']}, "
            f"{counts['dropped_never_solved']} never solved, {counts['dropped_always_solved']} "
            "always solved; nothing written"
        )
    write_jsonl(output_dir(out) / TRAIN_DATA, (e.to_row() for e in kept))
    manifest = build_manifest(sampling, source, out, config.mode, (low, high), counts)
    write_json(out / MANIFEST, manifest)
    print(
        f"kept {counts['kept']} of {counts['questions']} questions ({rule}); dropped "
        f"{counts['dropped_never_solved']} never solved, {counts['dropped_always_solved']} "
        f"always solved" + (f", {counts['dropped_other']} other" if counts["dropped_other"] else "")
    )
    print(f"wrote {out / TRAIN_DATA} ({counts['kept']} rows)")
    print(f"wrote {out / MANIFEST}")
    return manifest


def build_manifest(
    sampling: SamplingRun,
    source: Path,
    out: Path,
    mode: str,
    limits: tuple[int, int],
    counts: dict[str, int],
) -> dict[str, Any]:
    """manifest.json: the source file, the filter (run, model, K, bounds), the counts, how many
    questions had each number of correct completions, sha256 of the files, provenance."""
    summary, correct, k = sampling.summary, sampling.correct, sampling.k
    return {
        "source": str(source),
        "filter": {
            "run": str(sampling.path),
            "model": summary["model"],
            "model_path": summary.get("model_path"),
            "model_sha256": summary["identity"]["model_sha256"],
            "decoding": summary["decoding"],
            "k": k,
            "mode": mode,
            "min_correct": limits[0],
            "max_correct": limits[1],
        },
        "counts": counts,
        "questions_by_correct": {
            str(c): sum(n == c for n in correct.values()) for c in range(k + 1)
        },
        "rows": {TRAIN_DATA: counts["kept"]},
        "sha256": {
            "source": sha256_file(source),
            SAMPLES: sha256_file(sampling.samples),
            TRAIN_DATA: sha256_file(out / TRAIN_DATA),
        },
        "grpo_gsm8k_version": __version__,
        **provenance(data={"source": fingerprint(source), "run": fingerprint(sampling.samples)}),
    }
