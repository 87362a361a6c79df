"""Shared fixtures: the real GSM8K copy beside the repo and a prepared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get("GSM8K_DIR", REPO.parent / "shared" / "data" / "gsm8k"))


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").is_file():
        pytest.fail(f"GSM8K not found at {GSM8K_DIR} (set GSM8K_DIR)")
    return GSM8K_DIR


@pytest.fixture(scope="session")
def prepared(gsm8k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``grpo-gsm8k prepare`` output (7,473 train rows, 500 eval rows)."""
    from grpo_gsm8k.data import prepare

    out = tmp_path_factory.mktemp("data")
    prepare(str(gsm8k_dir), out, 500)
    return out
