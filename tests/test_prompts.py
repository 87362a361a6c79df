"""The one prompt template: chat messages with the system prompt, and the raw text form."""

from __future__ import annotations

from grpo_gsm8k.prompts import chat_messages, raw_prompt


def test_prompt_template() -> None:
    messages = chat_messages("How many?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How many?"
    assert "####" in messages[0]["content"]
    assert raw_prompt("How many?").endswith("Question: How many?\nAnswer:")
