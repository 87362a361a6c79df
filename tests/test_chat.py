"""``grpo-gsm8k chat``: the real REPL in a real pseudo-terminal (tmux) with the embedded model
named twice, and ``--ask`` through the CLI (answers, /gsm8k grading, /save, a model that fails)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from grpo_gsm8k.chat import model_labels
from grpo_gsm8k.cli import main
from grpo_gsm8k.data import load_prepared
from grpo_gsm8k.grading import extract, same_number
from grpo_gsm8k.models import resolve_model
from grpo_gsm8k.prompts import SYSTEM_PROMPT, raw_prompt, render_messages, render_prompt

MODEL = "smollm2-135m"

NO_EVAL_FILE = (
    "/gsm8k: no eval file data/eval.jsonl; `grpo-gsm8k prepare` writes it, or start the chat "
    "with --eval-file FILE"
)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------ prompt


def test_first_turn_is_the_eval_prompt_and_later_turns_carry_the_conversation() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL).path)
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    one = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    assert render_messages(one, tokenizer, "chat") == render_prompt(question, tokenizer, "chat")
    assert render_messages(one, tokenizer, "raw") == raw_prompt(question)

    two = [
        *one,
        {"role": "assistant", "content": "He has 7.\n#### 7"},
        {"role": "user", "content": "And if he eats 2?"},
    ]
    chat = render_messages(two, tokenizer, "chat")
    assert chat.startswith(render_prompt(question, tokenizer, "chat"))
    assert "He has 7.\n#### 7" in chat and chat.rstrip().endswith("assistant")
    raw = render_messages(two, tokenizer, "raw")
    assert (
        raw == raw_prompt(question) + " He has 7.\n#### 7\n\nQuestion: And if he eats 2?\nAnswer:"
    )


def test_labels_tell_the_same_model_apart(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoint-6").mkdir(parents=True)
    assert model_labels([MODEL, "org/name", MODEL]) == [f"{MODEL} #1", "org/name", f"{MODEL} #2"]
    assert model_labels([str(run / "checkpoint-6"), str(run)]) == ["run/checkpoint-6", "run"]


# ------------------------------------------------------------------------------------- --ask


def test_ask_two_models_follow_up_gsm8k_and_save(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two labelled answers per turn, a follow-up that sees the first answer, /gsm8k asked as
    eval asks it and graded in both modes, /save and --save writing the same rows."""
    saved, logged = tmp_path / "saved.jsonl", tmp_path / "new" / "log.jsonl"  # made when used
    eval_file = prepared / "eval.jsonl"
    code = main(
        [
            "chat", MODEL, MODEL, "--max-new-tokens", "8", "--eval-file", str(eval_file),
            "--save", str(logged),
            "--ask", "What is 2+3?", "--ask", "And times 4?", "--ask", "/gsm8k 0",
            "--ask", f"/save {saved}",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.count(f"╭─ {MODEL} #1") == 3 and out.count(f"╭─ {MODEL} #2") == 3
    assert out.count("tok/s") == 6
    assert "GSM8K question 0 (test-0000" in out and out.count("gold 18 · strict") == 2
    assert f"wrote {saved} (6 answers)" in out

    rows = read_rows(saved)
    assert rows == read_rows(logged)
    assert [(r["turn"], r["label"]) for r in rows] == [
        (t, f"{MODEL} #{k}") for t in (1, 2, 3) for k in (1, 2)
    ]
    example = load_prepared(eval_file)[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rows[0]["model_path"])
    for row in rows:
        assert row["model"] == MODEL and row["backend"] == "hf" and row["prompt_style"] == "chat"
        assert Path(row["model_path"], "config.json").is_file()
        assert row["system"] == SYSTEM_PROMPT
        assert 0 < row["tokens"] <= 8 and row["seconds"] > 0 and row["tokens_per_s"] > 0
        assert row["extracted"] == extract(row["answer"], "flexible")
        assert row["settings"]["greedy"] and row["settings"]["max_new_tokens"] == 8
        assert row["versions"]["torch"] and row["time"]
    assert rows[0]["prompt"] == render_prompt("What is 2+3?", tokenizer, "chat")
    assert rows[0]["answer"] == rows[1]["answer"]  # greedy: the same model answers the same
    assert rows[0]["answer"] in rows[2]["prompt"]  # the follow-up carries the conversation
    assert rows[2]["prompt"].startswith(rows[0]["prompt"])
    for row in rows[4:]:  # /gsm8k: a fresh conversation, exactly eval's prompt
        assert row["prompt"] == render_prompt(example.question, tokenizer, "chat")
        g = row["gsm8k"]
        assert (g["id"], g["index"], g["gold"]) == (example.id, 0, example.gold)
        assert g["data"]["path"] == str(eval_file) and len(g["data"]["sha256"]) == 64
        for mode in ("strict", "flexible"):
            assert g[f"pred_{mode}"] == extract(row["answer"], mode)
            assert g[f"correct_{mode}"] == same_number(g[f"pred_{mode}"], example.gold)
    assert all(r["gsm8k"] is None for r in rows[:4])
    assert [r["settings"]["seed"] for r in rows] == [0, 1, 1000, 1001, 2000, 2001]


def test_a_model_that_fails_to_load_is_one_line_and_the_others_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: lines piped on stdin (not a terminal) are the inputs, /quit ends them; a command
    that fails (/gsm8k in a folder without data/eval.jsonl, an unknown one, a bad value) is one
    line and the chat goes on."""
    monkeypatch.chdir(tmp_path)
    lines = "/gsm8k 3\n/nope\nHi\n/temperature x\n/quit\nnot asked\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = main(["chat", "/nonexistent/model", MODEL, "--max-new-tokens", "4"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    failed = [line for line in out.splitlines() if "/nonexistent/model" in line]
    assert failed == ["✗ /nonexistent/model: no such model folder"]
    assert f"✓ {MODEL}" in out and out.count(f"╭─ {MODEL}") == 1 and out.count("tok/s") == 1
    assert NO_EVAL_FILE in out.splitlines()
    assert "unknown command /nope; /help lists them" in out.splitlines()
    assert "/temperature needs a number >= 0 (now 0.0)" in out.splitlines()
    assert os.listdir(tmp_path) == []


def test_ask_commands_that_fail_exit_2(
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--ask: the first command that fails ends the chat with one line and status 2; the answers
    before it are kept."""
    monkeypatch.chdir(tmp_path)
    eval_file = str(prepared / "eval.jsonl")
    for asks, message in [
        (["Hi", "/gsm8k 99999"], "/gsm8k takes a question number from 0 to 499, got 99999"),
        (["/nope", "Hi"], "unknown command /nope; /help lists them"),
        (["/max-tokens 0"], "/max-tokens needs a whole number >= 1 (now 4)"),
    ]:
        argv = ["chat", MODEL, "--max-new-tokens", "4", "--eval-file", eval_file]
        argv += ["--save", "s.jsonl", *(a for ask in asks for a in ("--ask", ask))]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err == f"grpo-gsm8k chat: error: {message}\n"
        assert out.count("tok/s") == (1 if asks[0] == "Hi" else 0)
    assert len(read_rows(tmp_path / "s.jsonl")) == 1  # the one answer made, saved
    assert main(["chat", MODEL, "--ask", "/gsm8k 3"]) == 2  # no data/eval.jsonl here
    assert capsys.readouterr().err == f"grpo-gsm8k chat: error: {NO_EVAL_FILE}\n"
    assert os.listdir(tmp_path) == ["s.jsonl"]


def test_no_model_loads_or_bad_settings_exit_2_and_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused before or while loading: one line, status 2, no --save file or folder made."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    save = ["--save", "new/s.jsonl"]
    assert main(["chat", "/nonexistent/a", "./missing", *save, "--ask", "Hi"]) == 2
    out, err = capsys.readouterr()
    assert err == "grpo-gsm8k chat: error: no model could be loaded (see the lines above)\n"
    assert out.count("✗ ") == 2
    for argv, message in [
        ([MODEL, "--temperature", "-1", *save], "--temperature must be >= 0, got -1.0"),
        ([MODEL, "--dtype", "bf16", *save], "argument --dtype: invalid choice: 'bf16' (choose "
         "from 'auto', 'bfloat16', 'float16', 'float32')"),
        ([MODEL, "--save", "file/s.jsonl"], f"--save file/s.jsonl: {tmp_path / 'file'} is not a "
         "folder"),
        ([MODEL, "--save", "."], "--save .: is a folder; name a file"),
    ]:  # fmt: skip
        assert main(["chat", *argv, "--ask", "Hi"]) == 2
        assert capsys.readouterr().err == f"grpo-gsm8k chat: error: {message}\n"
    assert os.listdir(tmp_path) == ["file"]


# ------------------------------------------------------------------------- the real terminal


class Tmux:
    """One tmux server of our own (its own socket), one 160x50 window running ``command``."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", f"grpo-gsm8k-chat-test-{os.getpid()}", "-f", "/dev/null"]
        flags = [f"-e{k}={v}" for k, v in env.items()]
        self.run("new-session", "-d", "-s", "chat", "-x", "160", "-y", "50", *flags, command)

    def run(self, *args: str) -> str:
        # os.environ, not the C environment: readline (imported under pytest) exports
        # COLUMNS=80 LINES=24 there, which the server would pass on and rich would believe
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, check=True, env=env
        )
        return done.stdout

    def send(self, *keys: str) -> None:
        self.run("send-keys", "-t", "chat", *keys)

    def screen(self) -> str:
        """Everything the pane has shown (scrollback included), long lines joined."""
        return self.run("capture-pane", "-p", "-J", "-S", "-", "-t", "chat")

    def wait_for(self, pattern: str, count: int = 1, after: str = "", timeout: float = 240) -> str:
        """Wait until ``pattern`` shows ``count`` times (after the last ``after``, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            text = text[text.rfind(after) :] if after and after in text else text
            if len(re.findall(pattern, text)) >= count:
                return text
            if time.monotonic() > deadline:
                size = self.run("display", "-p", "-t", "chat", "#{window_width}x#{window_height}")
                raise AssertionError(f"no {count} x {pattern!r} on the {size} screen:\n{text}")
            time.sleep(0.3)

    def wait_for_prompt(self, timeout: float = 240) -> str:
        """Wait until the last line is an empty ``you>`` prompt (the turn is over)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.screen().splitlines() if line.strip()]
            if lines and lines[-1].strip() == "you>":
                return "\n".join(lines)
            if time.monotonic() > deadline:
                raise AssertionError("the prompt did not come back:\n" + "\n".join(lines))
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.mark.slow
def test_repl_in_a_real_terminal(prepared: Path, tmp_path: Path) -> None:
    """The embedded model twice in tmux: a command typed while the models load shows once, at
    the prompt, and failing (no data/eval.jsonl yet) is one line, the chat going on; a question
    streams into two labelled columns, Ctrl-C stops an answer but not the program, /gsm8k grades
    each model, /save writes one row per model answer, /quit exits 0."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install -y tmux; .ci/run does it)")
    transcript = tmp_path / "transcript.jsonl"
    command = " ".join(
        shlex.quote(a)
        for a in [
            sys.executable, "-m", "grpo_gsm8k.cli", "chat", MODEL, MODEL,
            "--max-new-tokens", "48", "--history-file", str(tmp_path / "history"),
        ]
    )  # fmt: skip
    env = {"PYTHONPATH": str(REPO / "src"), "TERM": "xterm-256color"}
    if "GRPO_GSM8K_CACHE" in os.environ:
        env["GRPO_GSM8K_CACHE"] = os.environ["GRPO_GSM8K_CACHE"]
    work = tmp_path / "work"  # the chat's folder: data/eval.jsonl comes later
    work.mkdir()
    tmux = Tmux(f"cd {shlex.quote(str(work))} && {command}; echo EXIT=$?; sleep 120", env)
    try:
        tmux.wait_for("hardware: backend hf")  # loading: keys typed now wait for the prompt
        tmux.send("/gsm8k 3", "Enter")
        tmux.wait_for(re.escape(NO_EVAL_FILE))
        screen = tmux.wait_for_prompt()
        assert screen.count("/gsm8k 3") == 1 and "you> /gsm8k 3" in screen, screen
        assert f"✓ {MODEL} #2" in screen and "EXIT=" not in screen
        (work / "data").mkdir()
        shutil.copy(prepared / "eval.jsonl", work / "data" / "eval.jsonl")
        tmux.send("What is 2+3?", "Enter")
        tmux.wait_for("tok/s", 2, after="What is 2+3?")
        screen = tmux.wait_for_prompt()
        # side by side on the 160-column screen: both labels on one line, ~80 columns each
        assert re.search(f"╭─ {MODEL} #1 ─{{40,}}╮ ╭─ {MODEL} #2 ─{{40,}}╮", screen), screen

        tmux.send("/max-tokens 400", "Enter")
        tmux.send("Count from 1 to 300, one number per line.", "Enter")
        tmux.wait_for("waiting…", after="Count from 1")  # model #1 is generating, #2 waits
        time.sleep(1)
        tmux.send("C-c")
        tmux.wait_for(r"stopped \(Ctrl-C\)")
        screen = tmux.wait_for_prompt()
        assert "skipped" in screen and "· stopped" in screen

        tmux.send("/max-tokens 48", "Enter")
        tmux.send("/gsm8k 0", "Enter")
        tmux.wait_for("GSM8K question 0")
        tmux.wait_for(r"gold 18 · strict [✓✗] .*? · flexible [✓✗]", 2, after="GSM8K question 0")
        tmux.wait_for_prompt()

        tmux.send(f"/save {transcript}", "Enter")
        tmux.wait_for(re.escape(f"wrote {transcript} (5 answers)"))
        tmux.send("/quit", "Enter")
        tmux.wait_for("EXIT=0", timeout=30)
    finally:
        tmux.close()

    rows = read_rows(transcript)
    assert [(r["turn"], r["label"], r["stopped"]) for r in rows] == [
        (1, f"{MODEL} #1", False),
        (1, f"{MODEL} #2", False),
        (2, f"{MODEL} #1", True),  # Ctrl-C: cut short; #2 was skipped
        (3, f"{MODEL} #1", False),
        (3, f"{MODEL} #2", False),
    ]
    assert rows[0]["question"] == "What is 2+3?" and rows[0]["answer"] == rows[1]["answer"]
    assert 0 < rows[2]["tokens"] < 400
    for row in rows[3:]:
        assert row["gsm8k"]["gold"] == "18" and row["gsm8k"]["id"] == "test-0000"
        assert row["tokens"] <= 48
    history = (tmp_path / "history").read_text()
    assert "+What is 2+3?" in history and "+/gsm8k 0" in history
