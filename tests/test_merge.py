"""`eval --shard I/N` + `grpo-gsm8k merge`: a 2-shard eval run through launch/slurm/eval.sbatch
(as a Slurm job array would run it) merges into exactly the 1-process eval; bad shard sets are
refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from grpo_gsm8k.cli import main

EVAL_SBATCH = REPO / "launch" / "slurm" / "eval.sbatch"
# what may differ between a merged run and a 1-process run: timing, the folder, the command
TIMING = {"out", "generation_s", "prompts_per_s", "generated_tokens_per_s", "model_load_s"}
TIMING |= {"total_s"}
RUN_ONLY = TIMING | {"timestamp", "command", "merged_from"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_args(prepared: Path) -> list[str]:
    return [
        "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "6", "--backend", "hf",
        "--max-new-tokens", "16",
    ]  # fmt: skip


def run_script(prepared: Path, out: Path, **env: str) -> None:
    """launch/slurm/eval.sbatch without Slurm: SHARD/SHARDS stand in for the array task."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), full_env.get("PYTHONPATH", "")])
    full_env.update(EVAL_OUT=str(out), GRPO_GSM8K=str(Path(sys.executable).parent / "grpo-gsm8k"))
    full_env.update(env)
    proc = subprocess.run(
        ["bash", str(EVAL_SBATCH), *eval_args(prepared)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_shards_merged_equal_one_process(prepared: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    assert main(["eval", *eval_args(prepared), "--out", str(single)]) == 0
    sharded = tmp_path / "sharded"
    run_script(prepared, sharded, SHARD="0", SHARDS="2")
    run_script(prepared, sharded, SHARD="1", SHARDS="2")
    shard_rows = [read_rows(sharded / f"shard-{i}-of-2" / "samples.jsonl") for i in (0, 1)]
    assert [r["id"] for r in shard_rows[0]] == ["test-0000", "test-0002", "test-0004"]
    assert [r["id"] for r in shard_rows[1]] == ["test-0001", "test-0003", "test-0005"]
    run_script(prepared, sharded, MERGE="1")

    merged = sharded / "merged"
    one, many = read_rows(single / "samples.jsonl"), read_rows(merged / "samples.jsonl")
    assert [r["id"] for r in many] == [r["id"] for r in one] == [f"test-000{i}" for i in range(6)]
    for a, b in zip(one, many, strict=True):  # same prompts, greedy completions and grades
        assert {k: v for k, v in a.items() if k != "gen_s"} == {
            k: v for k, v in b.items() if k != "gen_s"
        }
    s1 = json.loads((single / "summary.json").read_text())
    sm = json.loads((merged / "summary.json").read_text())
    assert {k: v for k, v in s1.items() if k not in RUN_ONLY} == {
        k: v for k, v in sm.items() if k not in RUN_ONLY
    }
    assert sm["n"] == 6 and sm["data"]["shard"] is None and sm["identity"] == s1["identity"]
    assert [m["shard"] for m in sm["merged_from"]] == ["0/2", "1/2"]
    assert json.loads((merged / "run.json").read_text()) == s1["identity"]
    # compare reads the merged run like any other
    assert main(["compare", str(single), str(merged), "--out", str(tmp_path / "cmp")]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["n_common"] == 6
    assert all(m["fixed"] == m["broken"] == 0 for m in result["metrics"].values())


# ---------------------------------------------------------------- refusals (folders by hand)


def fake_shard(folder: Path, index: int, count: int, ids: list[str], **changes: Any) -> Path:
    """A finished shard folder as eval writes it (summary.json + samples.jsonl)."""
    folder.mkdir(parents=True)
    rows = [
        {
            "id": i, "question": f"q {i}", "gold": "1", "prompt": f"p {i}",
            "completions": [f"#### {n % 2}"], "pred_strict": [str(n % 2)],
            "correct_strict": [n % 2 == 1], "pred_flexible": [str(n % 2)],
            "correct_flexible": [n % 2 == 1], "format_ok": [True], "tokens": [3],
            "truncated": [False], "gen_s": 0.5,
        }
        for n, i in ((int(i.split("-")[1]), i) for i in ids)
    ]  # fmt: skip
    decoding = {"max_new_tokens": 16, "n": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    identity = {
        "model_path": "/m", "model_sha256": "f00d", "backend": "hf", "dtype": "float32",
        "prompt_style": "chat", "prompt_template": {"style": "chat"}, "decoding": decoding,
        "data_sha256": "abc", "limit": None, "shard": f"{index}/{count}",
    }  # fmt: skip
    # a change of an identity field is made where eval would record it: in both places
    identity.update({k: v for k, v in changes.items() if k in identity})
    summary = {
        "model": "m", "model_path": "/m", "model_source": "local", "backend": "hf",
        "out": str(folder), "n": len(rows), "decoding": {**decoding, "greedy": True},
        "prompt_style": "chat",
        "data": {"sha256": "abc", "limit": None, "shard": f"{index}/{count}"},
        "identity": identity, "model_load_s": 1.0, "total_s": 2.0, "resumed_rows": 0,
    }  # fmt: skip
    summary.update(changes)
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def merge_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["merge", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("grpo-gsm8k merge: error: "), err
    return err


def test_merge_interleaves_three_shards(tmp_path: Path) -> None:
    ids = [f"t-{i}" for i in range(7)]
    shards = [fake_shard(tmp_path / f"s{i}", i, 3, ids[i::3]) for i in (2, 0, 1)]
    assert main(["merge", *map(str, shards), "--out", str(tmp_path / "m")]) == 0
    rows = read_rows(tmp_path / "m" / "samples.jsonl")
    assert [r["id"] for r in rows] == ids
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["n"] == 7 and summary["accuracy"]["strict"] == pytest.approx(3 / 7)
    assert summary["model_load_s"] == 3.0 and summary["generation_s"] == pytest.approx(3.5)


def test_merge_refuses_what_is_not_one_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"t-{i}" for i in range(6)]
    s0 = fake_shard(tmp_path / "s0", 0, 2, ids[0::2])
    s1 = fake_shard(tmp_path / "s1", 1, 2, ids[1::2])
    out = ["--out", str(tmp_path / "m")]
    assert "missing shard(s) 1/2" in merge_error([str(s0), *out], capsys)
    assert "are both shard 0/2" in merge_error([str(s0), str(s0), *out], capsys)
    other = fake_shard(tmp_path / "other", 1, 2, ids[1::2], backend="vllm", prompt_style="raw")
    assert "not the same eval as" in (err := merge_error([str(s0), str(other), *out], capsys))
    assert "(backend, prompt_style differ)" in err
    overlap = fake_shard(tmp_path / "overlap", 1, 2, ["t-0", "t-3", "t-5"])
    assert "question t-0 is in both" in merge_error([str(s0), str(overlap), *out], capsys)
    short = fake_shard(tmp_path / "short", 1, 2, ["t-1"])
    assert "shards 0..1 hold 3, 1 questions: not one split of 4" in merge_error(
        [str(s0), str(short), *out], capsys
    )
    thirds = fake_shard(tmp_path / "thirds", 1, 3, ids[1::3])
    assert "shards of different splits" in merge_error([str(s0), str(thirds), *out], capsys)
    whole = fake_shard(tmp_path / "whole", 0, 1, ids)
    summary = json.loads((whole / "summary.json").read_text())
    summary["data"]["shard"] = None
    (whole / "summary.json").write_text(json.dumps(summary))
    assert "not a shard" in merge_error([str(whole), *out], capsys)
    (s1 / "summary.json").unlink()
    assert "has not finished" in merge_error([str(s0), str(s1), *out], capsys)
    assert not (tmp_path / "m").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    s1b = fake_shard(tmp_path / "s1b", 1, 2, ids[1::2])
    err = merge_error([str(s0), str(s1b), "--out", str(tmp_path / "full")], capsys)
    assert "already exists and is not empty" in err


@pytest.mark.parametrize("shard", ["2/2", "0/0", "1", "a/2", "1/2/3", "-1/4", "\u0661/4"])
def test_eval_bad_shard_fails_before_the_model(
    shard: str, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--shard", shard]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "grpo-gsm8k eval: error: --shard must be I/N with ASCII digits and 0 <= I < N (e.g. 0/4), "
        f"got {shard!r}"
    )
    assert not (tmp_path / "x").exists()
