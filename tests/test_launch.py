"""launch/: every command the Slurm scripts print is parsed by the real tool's own parser
(accelerate's launcher, vLLM's `vllm serve`, our train parser), the arithmetic of the layout is
checked, and the scripts are shellcheck-clean. The batch and launch checks of `train` fail in
one line before any model loads. tests/test_slurm.py submits the same scripts to a real Slurm."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
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
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]
SERVE = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
# attention heads of the models the issue names (vLLM's tensor parallel size must divide them)
HEADS = {
    "Qwen/Qwen2.5-3B-Instruct": 16,
    "Qwen/Qwen2.5-0.5B-Instruct": 14,
    "Qwen/Qwen2.5-1.5B-Instruct": 12,
    "Qwen/Qwen2.5-7B-Instruct": 28,
    "meta-llama/Llama-2-7b-chat-hf": 32,
}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding the config.json of each model above (what a dry run
    reads the heads from; the hub itself is not reachable in tests)."""
    cache = tmp_path_factory.mktemp("hub")
    for repo_id, heads in HEADS.items():
        root = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = root / "snapshots" / "0123456789abcdef"
        snapshot.mkdir(parents=True)
        config = {"model_type": "qwen2", "num_attention_heads": heads, "hidden_size": 64 * heads}
        (snapshot / "config.json").write_text(json.dumps(config))
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text("0123456789abcdef")
    return cache


def snapshot(hub_cache: Path, repo_id: str) -> str:
    return str(
        hub_cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "0123456789abcdef"
    )


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["PYTHON"] = sys.executable
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def run_train_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TRAIN_SBATCH), *args],
        cwd=REPO,
        env=script_env(DRY_RUN="1", **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def dry_run(
    nodes: int, gpus: int, *train_args: str, comments: list[str] | None = None, **env: str
) -> list[tuple[str, list[str]]]:
    """``(host, argv)`` for every command line the train script prints (``#`` lines go to
    ``comments``)."""
    proc = run_train_script(*train_args, NODES=str(nodes), GPUS_PER_NODE=str(gpus), **env)
    assert proc.returncode == 0, proc.stderr
    commands = []
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            if comments is not None:
                comments.append(line)
            continue
        host, _, command = line.partition(": ")
        commands.append((host, shlex.split(command)))
    return commands


def script_error(proc: subprocess.CompletedProcess[str], name: str = "train.sbatch") -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(f"{name}: error: ") and len(err.splitlines()) == 1, err
    assert not proc.stdout
    return err


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

    assert argv[:3] == LAUNCH
    args = launch_command_parser().parse_args(argv[3:])
    assert args.config_file and (REPO / args.config_file).is_file()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        args, defaults, _ = _validate_launch_command(args)
    finally:
        os.chdir(cwd)
    assert defaults is not None  # the config file was read
    return args


def parse_train(argv: list[str], processes: int = 1) -> Any:
    """Our parser, as train runs it; for ``processes`` > 1 (this test is one process on CPU)
    the settings are parsed as each launched process parses them and the batch is checked at
    the launched world size."""
    from grpo_gsm8k.options import parse_options
    from grpo_gsm8k.training.distributed import batch_arithmetic
    from grpo_gsm8k.training.recipe import option_types, parse_train_args, train_defaults

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        if processes == 1:
            return parse_train_args(argv)
        script, config = parse_options(
            option_types(), argv, "grpo-gsm8k train", defaults=train_defaults()
        )
    finally:
        os.chdir(cwd)
    launched = SimpleNamespace(**vars(config))
    launched.world_size = processes
    batch_arithmetic(launched, script.prompts_per_step)
    return script, config


def parse_serve(argv: list[str]) -> Any:
    """vLLM's own `vllm serve` parser."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser", required=True))
    return parser.parse_args(argv)


def test_five_nodes_four_train_one_serves(prepared: Path, tmp_path: Path, hub_cache: Path) -> None:
    # the recipe pins 128 prompts per step: 4 x 8 training GPUs get accumulation 1
    comments: list[str] = []
    commands = dry_run(
        5, 8, "--config", QWEN, *data_args(prepared, tmp_path), comments=comments,
        HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    servers = [(h, c) for h, c in commands if c[:4] == SERVE]
    trainers = [(h, c) for h, c in commands if c[:3] == LAUNCH]
    health = [c for h, c in commands if h == "batch"]
    assert len(commands) == 6 and len(servers) == 1 and len(trainers) == 4
    assert [h for h, _ in trainers] == ["node1", "node2", "node3", "node4"]
    server_host, serve_argv = servers[0]
    assert server_host == "node5"
    assert (
        "# batch: 16 per device x 32 process(es) x 1 accumulation = 512 completions "
        in "\n".join(comments)
    )
    # the health check cannot hang: curl gives up after --max-time
    assert health == [["curl", "-sf", "--max-time", "10", "http://node5:8000/health"]]
    # each node sets its own VLLM_HOST_IP (the weight-sync group lives at rank 0's)
    assert any("VLLM_HOST_IP=<the node's address>" in c for c in comments)
    assert any("-node<I>.out per training node" in c and "-server.out" in c for c in comments)

    staged = snapshot(hub_cache, "Qwen/Qwen2.5-3B-Instruct")
    serve = parse_serve(serve_argv[3:])
    assert serve.model_tag == staged  # the local folder, staged once on the batch host
    assert serve.tensor_parallel_size == 8 and serve.port == 8000

    from grpo_gsm8k.training.distributed import batch_arithmetic

    processes = 0
    for rank, (_, argv) in enumerate(trainers):
        args = parse_accelerate(argv)
        assert args.config_file == "launch/accelerate/ddp.yaml"
        assert (args.num_machines, args.num_processes, args.machine_rank) == (4, 32, rank)
        assert (args.main_process_ip, args.rdzv_backend) == ("node1", "c10d")
        assert args.rdzv_conf == f"is_host={str(rank == 0).lower()}"  # node1 hosts the store
        assert args.multi_gpu and args.module and args.training_script == "grpo_gsm8k.cli"
        assert args.training_script_args[0] == "train"
        processes += args.num_processes // args.num_machines
        if rank > 0:  # what accelerate hands torchrun (rank 0 would also probe the port)
            from accelerate.utils.launch import prepare_multi_gpu_env

            prepare_multi_gpu_env(args)
            assert (args.nnodes, args.nproc_per_node) == ("4", "8")
            assert args.rdzv_endpoint == "node1:29500"

        # our parser takes every train argument, with the launch's 32 processes
        script, config = parse_train(args.training_script_args[1:], processes=32)
        assert script.model == serve.model_tag  # the server serves the model that trains
        assert script.prompts_per_step == 128 and config.gradient_accumulation_steps == 1
        assert config.use_vllm and config.vllm_mode == "server"
        assert (config.vllm_server_host, config.vllm_server_port) == (server_host, serve.port)
        assert (config.vllm_group_port, config.vllm_server_timeout) == (51216, 240)
        launched = SimpleNamespace(**vars(config))
        launched.world_size = args.num_processes
        batch = batch_arithmetic(launched, prompts_per_step=128)
        assert (batch["completions_per_step"], batch["prompts_per_step"]) == (16 * 32 * 1, 128)
    assert processes == 32


def test_server_command_is_trls_without_the_deprecated_wrapper(
    prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    """The server runs vLLM's own `vllm serve` with every flag `trl vllm-serve` (deprecated in
    TRL 1.16) would pass: both parse to the same vLLM settings, NCCL weight transfer included."""
    pytest.importorskip("vllm")
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    commands = dry_run(
        2, 4, "--config", QWEN, *data_args(prepared, tmp_path), HF_HUB_CACHE=str(hub_cache)
    )
    (serve_argv,) = [c for _, c in commands if c[:4] == SERVE]
    assert "trl" not in serve_argv and serve_argv[0] == sys.executable
    ours = parse_serve(serve_argv[3:])
    model = snapshot(hub_cache, "Qwen/Qwen2.5-3B-Instruct")
    trl_argv = build_command(ScriptArguments(model=model, tensor_parallel_size=4, port=8000))
    trls = parse_serve(trl_argv[trl_argv.index("serve") :])
    assert vars(ours) == vars(trls)
    assert ours.weight_transfer_config.backend == "nccl" and ours.tensor_parallel_size == 4


@pytest.mark.parametrize("name", CONFIGS)
def test_one_node_colocated_with_each_config(
    name: str, prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    config_file = f"launch/accelerate/{name}.yaml"
    commands = dry_run(
        1, 8, "--config", QWEN, *data_args(prepared, tmp_path), ACCELERATE_CONFIG=config_file,
        HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
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
    _, config = parse_train(args.training_script_args[1:], processes=8)
    assert config.use_vllm and config.vllm_mode == "colocate"
    assert config.gradient_accumulation_steps == 4  # 16 x 8 x 4 = 128 prompts x 4


@pytest.mark.parametrize(
    ("nodes", "mode", "processes", "accumulation"),
    [(4, "colocate", 32, 1), (2, "colocate", 16, 2), (2, "server", 8, 4)],
)
def test_vllm_mode_layouts_keep_128_prompts_per_step(
    prepared: Path, tmp_path: Path, hub_cache: Path, nodes: int, mode: str, processes: int,
    accumulation: int,
) -> None:  # fmt: skip
    commands = dry_run(
        nodes, 8, "--config", QWEN, *data_args(prepared, tmp_path), VLLM_MODE=mode,
        HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    trainers = [c for _, c in commands if c[:3] == LAUNCH]
    servers = [c for _, c in commands if c[:4] == SERVE]
    assert len(trainers) == (nodes if mode == "colocate" else nodes - 1)
    assert len(servers) == (0 if mode == "colocate" else 1)
    args = parse_accelerate(trainers[-1])
    assert args.num_processes == processes
    _, config = parse_train(args.training_script_args[1:], processes=processes)
    assert config.gradient_accumulation_steps == accumulation
    assert config.vllm_mode == mode
    assert 16 * processes * accumulation == 128 * 4


def test_batch_that_cannot_give_128_prompts_is_refused_with_the_arithmetic(
    prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    proc = run_train_script(
        "--config", QWEN, *data_args(prepared, tmp_path), NODES="3", GPUS_PER_NODE="8",
        VLLM_MODE="colocate", HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    assert script_error(proc).endswith(
        "prompts_per_step 128 x num_generations 4 = 512 completions per step is not a multiple "
        "of per_device_train_batch_size 16 x 24 process(es) = 384; change "
        "per_device_train_batch_size, prompts_per_step or the number of nodes/GPUs"
    )
    # an explicit accumulation is checked, not replaced
    proc = run_train_script(
        "--config", QWEN, *data_args(prepared, tmp_path), "--gradient_accumulation_steps", "4",
        NODES="5", GPUS_PER_NODE="8", HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    assert "= 2048 completions per step, not prompts_per_step 128 x num_generations 4" in (
        script_error(proc)
    )
    for name in ("qwen2.5-3b-instruct", "llama-2-7b-chat"):
        assert (
            yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())["prompts_per_step"]
            == 128
        )


@pytest.mark.parametrize(
    ("model", "gpus", "tp"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", 8, 7),
        ("Qwen/Qwen2.5-1.5B-Instruct", 8, 6),
        ("Qwen/Qwen2.5-7B-Instruct", 4, 4),
    ],
)
def test_tensor_parallel_divides_the_heads(
    prepared: Path, tmp_path: Path, hub_cache: Path, model: str, gpus: int, tp: int
) -> None:
    # --model=X and --config=X (one word) are read as train reads them
    commands = dry_run(
        2, gpus, f"--config={QWEN}", *data_args(prepared, tmp_path), f"--model={model}",
        "--per_device_train_batch_size", "4", "--prompts_per_step", str(gpus),
        HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    (serve_argv,) = [c for _, c in commands if c[:4] == SERVE]
    (train_argv,) = [c for _, c in commands if c[:3] == LAUNCH]
    serve = parse_serve(serve_argv[3:])
    assert serve.tensor_parallel_size == tp and HEADS[model] % tp == 0
    assert serve.model_tag == snapshot(hub_cache, model)
    script, _ = parse_train(parse_accelerate(train_argv).training_script_args[1:], processes=gpus)
    assert script.model == serve.model_tag


def test_tensor_parallel_that_does_not_divide_the_heads_is_refused(
    prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    proc = run_train_script(
        "--config", QWEN, *data_args(prepared, tmp_path), "--model", "Qwen/Qwen2.5-0.5B-Instruct",
        NODES="5", GPUS_PER_NODE="8", VLLM_TP="8", HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    assert script_error(proc).endswith(
        "VLLM_TP 8 does not divide the 14 attention heads of Qwen/Qwen2.5-0.5B-Instruct (vLLM "
        "refuses it); largest that fits 8 GPUs: 7"
    )


def test_server_serves_the_model_that_trains(
    prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    """`--model` swaps the model for the trainers and the vLLM server alike, in every spelling;
    an alias is served from its local checkpoint (vLLM needs a path)."""
    from grpo_gsm8k.models import resolve_model

    embedded = resolve_model("smollm2-135m").path
    for override, served in [
        (["--model", "Qwen/Qwen2.5-7B-Instruct"], snapshot(hub_cache, "Qwen/Qwen2.5-7B-Instruct")),
        (["--model=smollm2-135m"], embedded),
    ]:
        commands = dry_run(
            2, 4, f"--config={QWEN}", *data_args(prepared, tmp_path), *override,
            "--per_device_train_batch_size", "4", "--prompts_per_step", "4",
            HF_HUB_CACHE=str(hub_cache),
        )  # fmt: skip
        (serve_argv,) = [c for _, c in commands if c[:4] == SERVE]
        (train_argv,) = [c for _, c in commands if c[:3] == LAUNCH]
        assert serve_argv[4] == served
        script, _ = parse_train(parse_accelerate(train_argv).training_script_args[1:], processes=4)
        assert script.model == served


def test_ports_and_timeouts_reach_the_trainers(
    prepared: Path, tmp_path: Path, hub_cache: Path
) -> None:
    commands = dry_run(
        3, 2, "--config", QWEN, *data_args(prepared, tmp_path), "--per_device_train_batch_size",
        "4", "--prompts_per_step", "4", VLLM_GROUP_PORT="52000", VLLM_SERVER_TIMEOUT="900",
        VLLM_PORT="8100", MAIN_PORT="29600", HF_HUB_CACHE=str(hub_cache),
    )  # fmt: skip
    trainers = [c for _, c in commands if c[:3] == LAUNCH]
    assert len(trainers) == 2
    args = parse_accelerate(trainers[1])
    assert args.main_process_port == 29600
    _, config = parse_train(args.training_script_args[1:], processes=4)
    assert (config.vllm_group_port, config.vllm_server_timeout) == (52000, 900)
    assert (config.vllm_server_host, config.vllm_server_port) == ("node3", 8100)


def test_sbatch_directives_requeue_and_signal() -> None:
    directives = [
        line.split(None, 1)[1]
        for line in TRAIN_SBATCH.read_text().splitlines()
        if line.startswith("#SBATCH ")
    ]
    assert "--requeue" in directives and "--open-mode=append" in directives
    assert any(d.startswith("--signal=USR1@") for d in directives)


def test_save_on_signal_saves_at_the_end_of_the_step() -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from grpo_gsm8k.training.distributed import SaveOnSignal

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        callback = SaveOnSignal()
        args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
        state, control = TrainerState(), TrainerControl()
        callback.on_step_end(args, state, control)
        assert not control.should_save
        os.kill(os.getpid(), signal.SIGUSR1)
        callback.on_step_end(args, state, control)
        assert control.should_save
        control = TrainerControl()
        callback.on_step_end(args, state, control)  # once per signal
        assert not control.should_save
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_resume_under_another_launch_is_refused(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grpo_gsm8k.errors import RecipeError
    from grpo_gsm8k.runfiles import fingerprint
    from grpo_gsm8k.training.recipe import resolved_settings

    out = tmp_path / "out"
    argv = [
        "--config", "recipes/cpu-smollm2.yaml", "--train_file", str(prepared / "train.jsonl"),
        "--eval_file", str(prepared / "eval.jsonl"), "--output_dir", str(out),
        "--use_vllm", "false",
    ]  # fmt: skip
    settings = resolved_settings(*parse_train(argv))  # the run's own settings: the launch differs
    settings["data"] = {"train": fingerprint(prepared / "train.jsonl")}
    argv.append("--resume")
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    ddp = yaml.safe_load((REPO / "launch/accelerate/ddp.yaml").read_text())
    record = {
        **json.loads(json.dumps(settings, default=str)),
        "launch": {
            "world_size": 2, "num_machines": 2,
            "accelerate_config_file": {"path": "/x/launch/accelerate/ddp.yaml", "settings": ddp},
        },
    }  # fmt: skip
    (out / "grpo_gsm8k_config.json").write_text(json.dumps(record))
    monkeypatch.delenv("GRPO_GSM8K_RESHARD", raising=False)
    with pytest.raises(RecipeError) as e:
        parse_train(argv)
    message = str(e.value)
    assert "was trained with another launch (world size 2 (2 node(s)) -> 1; accelerate " in message
    assert (
        "config ddp.yaml -> none)" in message and "set GRPO_GSM8K_RESHARD=1 to re-shard" in message
    )
    monkeypatch.setenv("GRPO_GSM8K_RESHARD", "1")
    parse_train(argv)  # asked for: resumes
    monkeypatch.delenv("GRPO_GSM8K_RESHARD")
    record["launch"] = {"world_size": 1, "num_machines": 1, "accelerate_config_file": None}
    (out / "grpo_gsm8k_config.json").write_text(json.dumps(record))
    parse_train(argv)  # the same launch: resumes


def test_train_script_bad_input(hub_cache: Path) -> None:
    qwen = ["--config", QWEN]
    for args, env, message in [
        ([], {}, "no training arguments"),
        (qwen, {"ACCELERATE_CONFIG": "nope.yaml"}, "nope.yaml: file not found"),
        (qwen, {"NODES": "0"}, "NODES must be a positive integer"),
        (qwen, {"VLLM_MODE": "remote"}, "VLLM_MODE must be colocate or server"),
        (qwen, {"VLLM_MODE": "server", "NODES": "1"}, "VLLM_MODE=server needs 2"),
        (qwen, {"VLLM_GROUP_PORT": "x"}, "VLLM_GROUP_PORT must be a positive"),
        (["--config=nope.yaml"], {"NODES": "2"}, "nope.yaml: config file not found"),
        ([*qwen, "--no_such_field", "1"], {"NODES": "2"}, "unknown argument(s) --no_such_field 1"),
    ]:
        proc = run_train_script(*args, HF_HUB_CACHE=str(hub_cache), **env)
        assert message in script_error(proc)


def eval_dry_run(*args: str, **env: str) -> list[tuple[str, list[str]]]:
    proc = subprocess.run(
        ["bash", str(EVAL_SBATCH), *args],
        cwd=REPO,
        env=script_env(DRY_RUN="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [
        (label, shlex.split(command))
        for label, _, command in (line.partition(": ") for line in proc.stdout.splitlines())
    ]


def test_eval_script_dry_run_parses() -> None:
    from grpo_gsm8k.evaluation.evaluate import EvalConfig
    from grpo_gsm8k.evaluation.merge import MergeConfig
    from grpo_gsm8k.options import parse_options

    def parse(config_type: Any, argv: list[str]) -> Any:
        return parse_options([config_type], argv, "test", positional=config_type.positional)[0]

    tool = [sys.executable, "-m", "grpo_gsm8k.cli"]
    lines = eval_dry_run("runs/qwen/checkpoint-200", "--backend", "vllm", SHARDS="4")
    assert len(lines) == 7
    shards = []
    for i, (label, argv) in enumerate(lines[:4]):
        assert label == f"shard {i}" and argv[:4] == [*tool, "eval"]
        config = parse(EvalConfig, argv[4:])
        assert (config.model, config.backend, config.shard) == (
            "runs/qwen/checkpoint-200",
            "vllm",
            f"{i}/4",
        )
        shards.append(config.out)
    assert len(set(shards)) == 4
    label, argv = lines[4]
    assert label == "merge" and argv[:4] == [*tool, "merge"]
    merge = parse(MergeConfig, argv[4:])
    assert merge.shards == shards
    assert merge.out == "runs/eval/qwen-checkpoint-200-sharded/merged"
    # SUBMIT=1: the array 0..3, then the merge after it, both told SHARDS; the merge's log has
    # its own name (no array index)
    (_, array), (_, merge_job) = lines[5:]
    assert array[:3] == ["sbatch", "--parsable", "--array=0-3"]
    assert "--output=./%x-%A_%a.out" in array
    # SUBMIT=0: the jobs inherit the environment and must not submit again
    export = "--export=ALL,SUBMIT=0,SHARDS=4,EVAL_OUT=runs/eval/qwen-checkpoint-200-sharded"
    assert export in array and f"{export},MERGE=1" in merge_job
    assert "--dependency=afterok:<array job id>" in merge_job and "--gres=none" in merge_job
    assert "--job-name=grpo-gsm8k-eval-merge" in merge_job and "--output=./%x-%j.out" in merge_job


def run_eval_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(EVAL_SBATCH), *args],
        cwd=REPO,
        env=script_env(GRPO_GSM8K="echo", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_eval_array_task_is_its_shard(tmp_path: Path) -> None:
    """`sbatch --array=3 --export=ALL,SHARDS=8` reruns shard 3 (not 0); an array that is not
    0..N-1 must say SHARDS; the merge takes shards 0..N-1 only, and refuses a folder of mixed
    splits without SHARDS."""
    array3 = {
        "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3",
        "SLURM_ARRAY_TASK_COUNT": "1",
    }  # fmt: skip
    proc = run_eval_script("m", SHARDS="8", EVAL_OUT="e", **array3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "eval m --shard 3/8 --out e/shard-3-of-8"
    assert "pass SHARDS=N" in script_error(run_eval_script("m", **array3), "eval.sbatch")
    full = {**array3, "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}
    proc = run_eval_script("m", EVAL_OUT="e", **full)
    assert proc.stdout.splitlines()[-1] == "eval m --shard 3/4 --out e/shard-3-of-4"

    out = tmp_path / "e"
    for name in ("shard-0-of-2", "shard-1-of-2", "shard-0-of-3", "shard-1-of-3", "shard-2-of-3"):
        (out / name).mkdir(parents=True)
    proc = run_eval_script("m", MERGE="1", SHARDS="3", EVAL_OUT=str(out))
    merged = [f"{out}/shard-{i}-of-3" for i in range(3)]
    assert proc.stdout.splitlines()[-1] == " ".join(["merge", *merged, "--out", f"{out}/merged"])
    err = script_error(run_eval_script("m", MERGE="1", EVAL_OUT=str(out)), "eval.sbatch")
    assert "holds shards of several splits (of 2,3); pass SHARDS=N" in err


def test_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install -y shellcheck; .ci/run does)")
    scripts = sorted(
        map(
            str,
            [
                *REPO.glob("launch/slurm/*.sbatch"),
                *REPO.glob("launch/slurm/*.sh"),
                *REPO.glob("scripts/*.sh"),
                REPO / ".ci/run",
            ],
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
