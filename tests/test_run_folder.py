"""Opening an eval run folder without a model: start, resume, reprint a finished run, or refuse
another identity with nothing changed on disk; the model fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from grpo_gsm8k.data import Example
from grpo_gsm8k.evaluation.run_folder import EvalError, model_sha256, open_run
from grpo_gsm8k.evaluation.summary import IDENTITY_FIELDS


def identity(**changes: Any) -> dict[str, Any]:
    base = {
        "model_path": "/m", "model_sha256": "f00d", "backend": "hf", "dtype": "float32",
        "prompt_style": "chat", "prompt_template": {"style": "chat"},
        "decoding": {"max_new_tokens": 4, "n": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0},
        "data_sha256": "abc", "limit": 3, "shard": None,
    }  # fmt: skip
    assert set(base) == set(IDENTITY_FIELDS)
    return {**base, **changes}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


EXAMPLES = [Example(i, f"q {i}", "#### 1", "1") for i in ("a", "b", "c")]
WANTED = {e.id for e in EXAMPLES}


def test_open_run_starts_then_resumes_the_same_identity(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = open_run(out, identity(), WANTED)
    assert run.made and run.rows == [] and run.finished is None
    assert json.loads((out / "run.json").read_text()) == identity()
    # two finished rows and a torn third, as a killed eval leaves them
    rows = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (out / "samples.jsonl").write_text(text + '{"id": "c", "n"')
    run = open_run(out, identity(), WANTED)
    assert not run.made and run.rows == rows and run.finished is None
    assert [e.id for e in run.todo(EXAMPLES)] == ["c"]
    assert (out / "samples.jsonl").read_text() == text  # the torn line is dropped


def test_open_run_refuses_another_identity_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    open_run(out, identity(), WANTED)
    (out / "samples.jsonl").write_text('{"id": "a"}\n{"id": "b"')
    before = snapshot(out)
    with pytest.raises(EvalError) as e:
        open_run(out, identity(dtype="bfloat16", limit=4), WANTED)
    assert str(e.value) == (
        f"{out} holds a run with other settings (dtype, limit differ): recorded dtype=float32 "
        "limit=3, now dtype=bfloat16 limit=4; pass another --out or delete that folder"
    )
    with pytest.raises(EvalError, match=r"\(prompt_template, decoding differ\); pass another"):
        open_run(out, identity(decoding={}, prompt_template={"style": "raw"}), WANTED)
    old = {k: v for k, v in identity().items() if k != "model_sha256"}  # an older eval's record
    (out / "run.json").write_text(json.dumps(old))
    before = snapshot(out)
    with pytest.raises(EvalError, match=r"\(model_sha256 differ\)"):
        open_run(out, identity(), WANTED)
    assert snapshot(out) == before


def test_a_finished_run_is_reprinted_or_kept(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "samples.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in "abc"))
    summary = {"n": 3, "identity": identity(), "merged_from": [{"shard": "0/2"}]}
    (out / "summary.json").write_text(json.dumps(summary))  # no run.json: the summary's counts
    before = snapshot(out)
    run = open_run(out, identity(), WANTED)
    assert run.finished == summary and snapshot(out) == before
    with pytest.raises(EvalError, match=r"\(limit differ\): recorded limit=3, now limit=2"):
        open_run(out, identity(limit=2), {"a", "b"})
    assert snapshot(out) == before  # merged_from and all


def test_unrecorded_runs_are_refused_and_empty_folders_discarded(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "samples.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(EvalError, match=r"holds samples\.jsonl but no run\.json"):
        open_run(bare, identity(), WANTED)
    (bare / "summary.json").write_text('{"n": 1}')
    with pytest.raises(EvalError, match="without a recorded identity"):
        open_run(bare, identity(), WANTED)
    run = open_run(tmp_path / "new", identity(), WANTED)
    run.discard_if_empty()  # the model did not load: no folder left behind
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    open_run(kept, identity(), WANTED).discard_if_empty()  # a folder the user made stays
    assert kept.is_dir() and not any(kept.iterdir())


def test_model_sha256(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "tokenizer.json").write_text("{}")
    weights = bytearray(range(256)) * 4096 * 3  # 3 MiB: sampled, not read whole
    (model / "model.safetensors").write_bytes(bytes(weights))
    digest = model_sha256(model)
    assert len(digest) == 64
    shutil.copytree(model, tmp_path / "copy")
    assert model_sha256(tmp_path / "copy") == digest  # where it is does not matter
    weights[0] ^= 1  # retrained: the first block changed
    (model / "model.safetensors").write_bytes(bytes(weights))
    assert model_sha256(model) != digest
    (tmp_path / "copy" / "tokenizer.json").write_text('{"x": 1}')
    assert model_sha256(tmp_path / "copy") != digest
