"""The sbatch scripts under a real Slurm: `launch/slurm/local-cluster.sh up` starts munged, a
slurmctld and three slurmd daemons (nodes n1..n3 on this machine, CPU only), and these tests
submit launch/slurm/eval.sbatch and train.sbatch to it as a user would (`--gres=none`: no GPUs).

- an eval array of 3 shards plus the dependent merge job = the 1-process eval;
- training on 2 nodes (gloo, c10d rendezvous on the first, VLLM_MODE=colocate, transformers
  generation): USR1 saves a checkpoint, `scontrol requeue` restarts the job, which resumes from
  it; the run records world size 2 on 2 nodes, every step is logged once, the checkpoint
  evaluates;
- a training process killed with SIGKILL ends the whole job within 2 minutes.

Needs root and the Debian packages slurm-wlm and munge (`.ci/run` installs them); without them
the tests are skipped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO
from test_merge import RUN_ONLY, eval_args, read_rows

from grpo_gsm8k.cli import main

pytestmark = pytest.mark.slow

CLUSTER = REPO / "launch" / "slurm" / "local-cluster.sh"
EVAL_SBATCH = REPO / "launch" / "slurm" / "eval.sbatch"
TRAIN_SBATCH = REPO / "launch" / "slurm" / "train.sbatch"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


def _answers() -> bool:
    return shutil.which("sinfo") is not None and (
        subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """The local cluster, started by the repository's own script (and stopped after) unless a
    Slurm already answers."""
    if _answers():
        yield
        return
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("Slurm not installed (apt-get install -y slurm-wlm munge; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root")
    proc = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, timeout=120)


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "ACCELERATE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def job(job_id: str) -> list[dict[str, str]]:
    """``scontrol show job`` of a job (one dict per array task)."""
    proc = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return [
        dict(re.findall(r"(\w+)=(\S*)", line)) for line in proc.stdout.splitlines() if line.strip()
    ]


def wait_for(what: Callable[[], object], timeout: float, message: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s: {message}")


def wait_done(job_id: str, timeout: float = 900) -> list[dict[str, str]]:
    wait_for(lambda: all(t["JobState"] in DONE for t in job(job_id)), timeout, f"job {job_id}")
    return job(job_id)


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return [row["step"] for row in rows if "loss" in row]


def train_args(prepared: Path, out: Path, *extra: str) -> list[str]:
    """The CPU recipe shrunk: 2 prompts x 4 completions x 16 tokens per step (4 per process),
    transformers generation, no in-training eval."""
    return [
        "--config", "recipes/cpu-smollm2.yaml", "--train_file", str(prepared / "train.jsonl"),
        "--eval_file", str(prepared / "eval.jsonl"), "--output_dir", str(out),
        "--use_vllm", "false", "--bf16", "false", "--per_device_train_batch_size", "4",
        "--num_generations", "4", "--max_completion_length", "16", "--eval_every", "0",
        "--completions_per_step", "2", "--save_steps", "100",
        "--dynamic_sampling_rounds", "0",  # 16 tokens: no reward spread to refill for
        *extra,
    ]  # fmt: skip


def submit_train(tmp_path: Path, args: list[str], port: int) -> str:
    """train.sbatch on 2 nodes, one training process each (colocated generation)."""
    command = [
        "sbatch", "--parsable", "--nodes=2", "--gres=none", f"--chdir={REPO}",
        f"--output={tmp_path}/%x-%j.out", str(TRAIN_SBATCH), *args,
    ]  # fmt: skip
    env = job_env(GPUS_PER_NODE="1", VLLM_MODE="colocate", LOG_DIR=str(tmp_path / "logs"))
    env["MAIN_PORT"] = str(port)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def batch_log(tmp_path: Path, job_id: str) -> str:
    path = tmp_path / f"grpo-gsm8k-{job_id}.out"
    return path.read_text() if path.is_file() else ""


def test_eval_array_and_merge_equal_one_process(
    cluster: None, prepared: Path, tmp_path: Path
) -> None:
    out, logs = tmp_path / "sharded", tmp_path / "logs"
    (out / "shard-0-of-2").mkdir(parents=True)  # a stale split the merge must leave alone
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(EVAL_SBATCH), *eval_args(prepared)],
        cwd=REPO,
        env=job_env(
            SUBMIT="1", SHARDS="3", EVAL_OUT=str(out), LOG_DIR=str(logs), SBATCH_ARGS="--gres=none"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    array_id, merge_id = re.findall(r"job (\d+)", proc.stdout)
    single = tmp_path / "single"  # meanwhile, the same eval in one process
    assert main(["eval", *eval_args(prepared), "--out", str(single)]) == 0
    tasks = wait_done(array_id)
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["0", "1", "2"]
    assert {t["JobState"] for t in tasks} == {"COMPLETED"}, tasks
    (merge,) = wait_done(merge_id)
    assert merge["JobState"] == "COMPLETED", merge
    print(f"eval array of 3 + merge: {time.monotonic() - started:.0f} s")

    one, many = read_rows(single / "samples.jsonl"), read_rows(out / "merged" / "samples.jsonl")
    assert [r["id"] for r in many] == [r["id"] for r in one] == [f"test-000{i}" for i in range(6)]
    for a, b in zip(one, many, strict=True):
        assert {k: v for k, v in a.items() if k != "gen_s"} == {
            k: v for k, v in b.items() if k != "gen_s"
        }
    s1 = json.loads((single / "summary.json").read_text())
    sm = json.loads((out / "merged" / "summary.json").read_text())
    assert {k: v for k, v in s1.items() if k not in RUN_ONLY} == {
        k: v for k, v in sm.items() if k not in RUN_ONLY
    }
    assert [m["shard"] for m in sm["merged_from"]] == ["0/3", "1/3", "2/3"]
    # one log per array task and one for the merge, named by job (not <id>_4294967294)
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        [f"grpo-gsm8k-eval-{array_id}_{i}.out" for i in range(3)]
        + [f"grpo-gsm8k-eval-merge-{merge_id}.out"]
    )


def test_two_node_training_signal_requeue_resume(
    cluster: None, prepared: Path, tmp_path: Path
) -> None:
    from grpo_gsm8k.models import resolve_model

    out = tmp_path / "out"
    started = time.monotonic()
    job_id = submit_train(tmp_path, train_args(prepared, out, "--max_steps", "4"), 29611)
    wait_for(lambda: logged_steps(out), 900, f"the first step of job {job_id}")
    first_step = time.monotonic()
    # USR1, as Slurm sends it before the time limit: a checkpoint at the end of the step
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)

    def saved() -> Path | None:
        for folder in out.glob("checkpoint-*"):
            if (folder / "trainer_state.json").is_file() and len(
                list(folder.glob("rng_state*.pth"))
            ) == 2:
                return folder
        return None

    checkpoint = wait_for(saved, 300, "a checkpoint after USR1")
    assert isinstance(checkpoint, Path)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    # Slurm holds a requeued job for ~2 minutes before it may start again; release it now
    wait_for(lambda: job(job_id)[0]["JobState"] == "PENDING", 120, f"job {job_id} requeued")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    (state,) = wait_done(job_id)
    print(
        f"2-node training with a requeue: {time.monotonic() - started:.0f} s "
        f"({first_step - started:.0f} s to the first step)"
    )
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "1", (
        state,
        batch_log(tmp_path, job_id)[-3000:],
    )
    log = batch_log(tmp_path, job_id)
    assert f"restart 1: resuming from {checkpoint}" in log
    assert "VLLM_MODE=colocate: 2 training node(s), 2 processes" in log

    # every step exactly once, across the restart
    assert logged_steps(out) == [1, 2, 3, 4]
    record = json.loads((out / "grpo_gsm8k_config.json").read_text())
    launch = record["launch"]
    assert (launch["world_size"], launch["num_machines"], launch["launcher"]) == (
        2,
        2,
        "accelerate",
    )
    assert launch["env"]["SLURM_NNODES"] == "2"
    assert launch["env"]["VLLM_HOST_IP"] == "127.0.0.1"  # what n1 resolves to here
    # the restart is appended to the record (the first launch's stays as it was)
    (resumed,) = record["resumes"]
    assert resumed["checkpoint"] == str(checkpoint)
    assert resumed["launch"]["env"]["SLURM_RESTART_COUNT"] == "1"
    assert (resumed["launch"]["world_size"], resumed["launch"]["num_machines"]) == (2, 2)
    # the model was staged on the batch host and given to both nodes as a folder
    assert record["model"]["path"] == resolve_model("smollm2-135m").path
    # each node has its own log, per run (the batch log only says what started where)
    logs = tmp_path / "logs"
    for restart in (0, 1):
        for rank in (0, 1):
            text = (logs / f"grpo-gsm8k-{job_id}-r{restart}-node{rank}.out").read_text()
            assert f" task {rank} VLLM_HOST_IP=127.0.0.1: " in text
            assert f"--machine_rank {rank} " in text
    assert " task 0 VLLM_HOST_IP" not in log

    # the checkpoint evaluates
    evaluated = tmp_path / "eval"
    argv = ["eval", str(checkpoint), "--data", str(prepared / "eval.jsonl"), "--limit", "2"]
    assert main([*argv, "--max-new-tokens", "8", "--backend", "hf", "--out", str(evaluated)]) == 0
    assert json.loads((evaluated / "summary.json").read_text())["n"] == 2


def training_pid(job_id: str, rank: int) -> int | None:
    """The training process of ``rank`` in a job (its environment says so)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            f"SLURM_JOB_ID={job_id}".encode() in environ
            and f"RANK={rank}".encode() in environ
            and b"grpo_gsm8k.cli" in cmdline
            and b"accelerate.commands.launch" not in cmdline
        ):
            return int(proc.name)
    return None


def test_killed_training_process_ends_the_job(
    cluster: None, prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job_id = submit_train(tmp_path, train_args(prepared, out, "--max_steps", "50"), 29622)
    wait_for(lambda: logged_steps(out), 900, f"the first step of job {job_id}")
    pid = wait_for(lambda: training_pid(job_id, 1), 30, "the rank 1 process")
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    (state,) = wait_done(job_id, timeout=300)
    ended = time.monotonic() - killed
    print(f"job ended {ended:.0f} s after its rank 1 process was killed")
    assert state["JobState"] == "FAILED", state
    assert ended < 120
    assert max(logged_steps(out)) < 50
