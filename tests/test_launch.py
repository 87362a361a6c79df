"""launch/: every command the Slurm scripts print is parsed by the real tool's own parser
(accelerate's launcher, TRL's `trl vllm-serve`, vLLM's `vllm serve`, our train parser), the
arithmetic of the layout is checked, and the scripts are shellcheck-clean. The batch and launch
checks of `train` fail in one line before any model loads."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import REPO

from grpo_gsm8k.cli import main

TRAIN_SBATCH = REPO / "launch" / "slurm" / "train.sbatch"
EVAL_SBATCH = REPO / "launch" / "slurm" / "eval.sbatch"
QWEN = "recipes/qwen2.5-3b-instruct.yaml"
CONFIGS = ["ddp", "zero2", "zero3", "fsdp2"]


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def dry_run(nodes: int, gpus: int, *train_args: str, **env: str) -> list[tuple[str, list[str]]]:
    """``(host, argv)`` for every command line the train script prints."""
    proc = subprocess.run(
        ["bash", str(TRAIN_SBATCH), *train_args],
        cwd=REPO,
        env=script_env(DRY_RUN="1", NODES=str(nodes), GPUS_PER_NODE=str(gpus), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    commands = []
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            continue
        host, _, command = line.partition(": ")
        commands.append((host, shlex.split(command)))
    return commands


def data_args(prepared: Path, tmp_path: Path) -> list[str]:
    """Overrides a user would pass too: data files that exist here, a fresh output dir, and
    no bf16 (which needs a GPU to parse)."""
    return [
        "--train_file", str(prepared / "train.jsonl"), "--eval_file", str(prepared / "eval.jsonl"),
        "--output_dir", str(tmp_path / "out"), "--bf16", "false",
    ]  # fmt: skip


def parse_accelerate(argv: list[str]) -> Any:
    """accelerate's own parser, then its own defaults-from-config step (what `accelerate launch`
    does before starting anything)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert argv[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(argv[2:])
    assert args.config_file and (REPO / args.config_file).is_file()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        args, defaults, _ = _validate_launch_command(args)
    finally:
        os.chdir(cwd)
    assert defaults is not None  # the config file was read
    return args


def parse_train(argv: list[str]) -> Any:
    from grpo_gsm8k.training.recipe import parse_train_args

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return parse_train_args(argv)
    finally:
        os.chdir(cwd)


def test_five_nodes_four_train_one_serves(prepared: Path, tmp_path: Path) -> None:
    # the command the Qwen recipe documents: 4 x 8 training GPUs, accumulation 1 = 128 prompts
    recommended = ["--gradient_accumulation_steps", "1", "--prompts_per_step", "128"]
    commands = dry_run(5, 8, "--config", QWEN, *data_args(prepared, tmp_path), *recommended)
    servers = [(h, c) for h, c in commands if c[:2] == ["trl", "vllm-serve"]]
    trainers = [(h, c) for h, c in commands if c[:2] == ["accelerate", "launch"]]
    assert len(commands) == 5 and len(servers) == 1 and len(trainers) == 4
    assert [h for h, _ in trainers] == ["node1", "node2", "node3", "node4"]
    server_host, serve_argv = servers[0]
    assert server_host == "node5"

    # TRL's own parser for `trl vllm-serve`: nothing left over (it would go to `vllm serve`)
    from trl.scripts.vllm_serve import make_parser

    serve, extra = make_parser(prog="trl vllm-serve").parse_args_and_config(
        args=serve_argv[2:], return_remaining_strings=True
    )
    assert extra == []
    assert serve.model == "Qwen/Qwen2.5-3B-Instruct"  # the recipe's model
    assert serve.tensor_parallel_size == 8

    from grpo_gsm8k.training.distributed import batch_arithmetic

    processes = 0
    for rank, (_, argv) in enumerate(trainers):
        args = parse_accelerate(argv)
        assert args.config_file == "launch/accelerate/ddp.yaml"
        assert (args.num_machines, args.num_processes, args.machine_rank) == (4, 32, rank)
        assert (args.main_process_ip, args.rdzv_backend) == ("node1", "c10d")
        assert args.multi_gpu and args.module and args.training_script == "grpo_gsm8k.cli"
        assert args.training_script_args[0] == "train"
        processes += args.num_processes // args.num_machines
        if rank > 0:  # what accelerate hands torchrun (rank 0 would also probe the port)
            from accelerate.utils.launch import prepare_multi_gpu_env

            prepare_multi_gpu_env(args)
            assert (args.nnodes, args.nproc_per_node) == ("4", "8")
            assert args.rdzv_endpoint == "node1:29500"

        # our parser takes every train argument; here the world size is 1, so the per-step
        # check runs below with the launch's 32 processes
        train_args = args.training_script_args[1:]
        i = train_args.index("--prompts_per_step")
        assert train_args[i + 1] == "128"
        script, config = parse_train(train_args[:i] + train_args[i + 2 :])
        assert script.model == serve.model
        assert config.use_vllm and config.vllm_mode == "server"
        assert (config.vllm_server_host, config.vllm_server_port) == (server_host, serve.port)
        launched = SimpleNamespace(**vars(config))
        launched.world_size = args.num_processes
        batch = batch_arithmetic(launched, prompts_per_step=128)
        assert (batch["completions_per_step"], batch["prompts_per_step"]) == (16 * 32 * 1, 128)
    assert processes == 32


@pytest.mark.parametrize("name", CONFIGS)
def test_one_node_colocated_with_each_config(name: str, prepared: Path, tmp_path: Path) -> None:
    config_file = f"launch/accelerate/{name}.yaml"
    commands = dry_run(
        1, 8, "--config", QWEN, *data_args(prepared, tmp_path), ACCELERATE_CONFIG=config_file
    )
    assert len(commands) == 1
    host, argv = commands[0]
    assert host == "node1"
    args = parse_accelerate(argv)
    assert args.config_file == config_file
    assert (args.num_machines, args.num_processes, args.machine_rank) == (1, 8, 0)
    assert {
        "ddp": args.multi_gpu,
        "zero2": args.use_deepspeed and args.zero_stage == 2,
        "zero3": args.use_deepspeed and args.zero_stage == 3,
        "fsdp2": args.use_fsdp and str(args.fsdp_version) == "2",
    }[name]
    # process and machine counts come from the command line, never from the file
    settings = yaml.safe_load((REPO / config_file).read_text())
    assert "num_processes" not in settings and "num_machines" not in settings
    _, config = parse_train(args.training_script_args[1:])
    assert config.use_vllm and config.vllm_mode == "colocate"


def test_trl_serve_command_parses_with_vllm(prepared: Path, tmp_path: Path) -> None:
    """What `trl vllm-serve` execs (`vllm serve ...` with TRL's extra flags) parses with the
    installed vLLM's own parser: the NCCL weight-transfer engine is part of it."""
    pytest.importorskip("vllm")
    from trl.scripts.vllm_serve import build_command, make_parser
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    commands = dry_run(2, 4, "--config", QWEN, *data_args(prepared, tmp_path))
    (serve_argv,) = [c for _, c in commands if c[:2] == ["trl", "vllm-serve"]]
    serve, extra = make_parser().parse_args_and_config(
        args=serve_argv[2:], return_remaining_strings=True
    )
    vllm_argv = build_command(serve, extra)
    parser = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser", required=True))
    args = parser.parse_args(vllm_argv[vllm_argv.index("serve") :])
    assert args.model_tag == "Qwen/Qwen2.5-3B-Instruct"
    assert args.tensor_parallel_size == 4 and args.port == 8000
    assert args.weight_transfer_config.backend == "nccl"


def test_server_serves_the_model_that_trains(prepared: Path, tmp_path: Path) -> None:
    """`--model` swaps the model for the trainers and the vLLM server alike; an alias is served
    from its local checkpoint (vLLM needs a path)."""
    from grpo_gsm8k.models import resolve_model

    for override, served in [
        (["--model", "Qwen/Qwen2.5-7B-Instruct"], "Qwen/Qwen2.5-7B-Instruct"),
        (["--model", "smollm2-135m"], resolve_model("smollm2-135m").path),
    ]:
        commands = dry_run(2, 4, "--config", QWEN, *data_args(prepared, tmp_path), *override)
        (serve_argv,) = [c for _, c in commands if c[:2] == ["trl", "vllm-serve"]]
        assert serve_argv[serve_argv.index("--model") + 1] == served


def test_train_script_bad_input() -> None:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(TRAIN_SBATCH), *args],
            cwd=REPO,
            env=script_env(DRY_RUN="1", **env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    for proc, message in [
        (run(), "no training arguments"),
        (run("--config", QWEN, ACCELERATE_CONFIG="nope.yaml"), "nope.yaml: file not found"),
        (run("--config", QWEN, NODES="0"), "NODES must be a positive integer"),
    ]:
        assert proc.returncode == 2
        assert proc.stderr.startswith("train.sbatch: error: ") and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout


def test_eval_script_dry_run_parses() -> None:
    from grpo_gsm8k.evaluation.evaluate import EvalConfig
    from grpo_gsm8k.evaluation.merge import MergeConfig
    from grpo_gsm8k.options import parse_options

    def parse(config_type: Any, argv: list[str]) -> Any:
        return parse_options([config_type], argv, "test", positional=config_type.positional)[0]

    proc = subprocess.run(
        ["bash", str(EVAL_SBATCH), "runs/qwen/checkpoint-200", "--backend", "vllm"],
        cwd=REPO,
        env=script_env(DRY_RUN="1", SHARDS="4"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5
    shards = []
    for i, line in enumerate(lines[:4]):
        label, _, command = line.partition(": ")
        argv = shlex.split(command)
        assert label == f"shard {i}" and argv[:2] == ["grpo-gsm8k", "eval"]
        config = parse(EvalConfig, argv[2:])
        assert (config.model, config.backend, config.shard) == (
            "runs/qwen/checkpoint-200",
            "vllm",
            f"{i}/4",
        )
        shards.append(config.out)
    assert len(set(shards)) == 4
    label, _, command = lines[4].partition(": ")
    argv = shlex.split(command)
    assert label == "merge" and argv[:2] == ["grpo-gsm8k", "merge"]
    merge = parse(MergeConfig, argv[2:])
    assert merge.shards == shards
    assert merge.out == "runs/eval/qwen-checkpoint-200-sharded/merged"


def test_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck; .ci/run does)")
    scripts = sorted(
        map(
            str, [*REPO.glob("launch/slurm/*.sbatch"), *REPO.glob("scripts/*.sh"), REPO / ".ci/run"]
        )
    )
    proc = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------- train's batch and launch checks (no model)


def test_batch_arithmetic_is_recorded_and_checked(prepared: Path, tmp_path: Path) -> None:
    from grpo_gsm8k.errors import RecipeError
    from grpo_gsm8k.training.distributed import batch_arithmetic

    args = ["--config", QWEN, *data_args(prepared, tmp_path)]
    _, config = parse_train([*args, "--prompts_per_step", "16"])
    assert batch_arithmetic(config) == {
        "per_device_train_batch_size": 16,
        "processes": 1,
        "gradient_accumulation_steps": 4,
        "completions_per_step": 64,
        "num_generations": 4,
        "prompts_per_step": 16,
        "completions_per_rank_per_step": 64,
        "generation_batch_size": 64,
        "steps_per_generation": 4,
    }
    with pytest.raises(RecipeError, match=r"= 64 completions per step, not prompts_per_step 128"):
        parse_train([*args, "--prompts_per_step", "128"])


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (
            ["--prompts_per_step", "3"],
            {},
            "per_device_train_batch_size 4 x 1 process(es) x gradient_accumulation_steps 1 = 4 "
            "completions per step, not prompts_per_step 3 x num_generations 2",
        ),
        ([], {"ACCELERATE_USE_FSDP": "true"}, "uses FSDP, but this run is on CPU"),
    ],
)
def test_launch_checks_fail_in_one_line_before_the_model(
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = [
        "train", "--config", str(REPO / "recipes" / "cpu-smollm2.yaml"),
        "--train_file", str(prepared / "train.jsonl"), "--eval_file", str(prepared / "eval.jsonl"),
        "--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size", "4",
        "--num_generations", "2", *extra,
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grpo-gsm8k train: error: ") and len(err.splitlines()) == 1
    assert message in err
    assert not (tmp_path / "out").exists()


def test_deepspeed_config_without_deepspeed_fails_in_one_line(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from grpo_gsm8k.errors import RecipeError

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(RecipeError, match=r"pip install -e \.\[deepspeed\]"):
        parse_train(["--config", QWEN, *data_args(prepared, tmp_path)])
