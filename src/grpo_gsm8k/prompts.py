"""The one prompt template: what eval, training and chat send to a model, and its identity.

``chat``
    The model's chat template with :data:`SYSTEM_PROMPT` as the system turn and the question as
    the user turn (templates that reject a system turn get the instruction prepended to the user
    turn instead).
``raw``
    Plain text for base models without a chat template (:data:`RAW_TEMPLATE`).
``seed``
    The published seed scripts' raw prompt, byte for byte: :data:`SEED_INSTRUCTION`, one space,
    the question; no chat template, no system turn (:data:`SEED_TEMPLATE`). Their baseline eval
    and their training sent exactly this text; it is here to reproduce their numbers like for
    like, not as our template.
``auto``
    chat when the tokenizer has a chat template, else raw; resolved once by
    :func:`resolve_prompt_style`, wherever the value comes from (CLI or recipe).

Token ids follow one BOS rule (:func:`prompt_ids`): a text that already starts with the BOS token
(chat templates that write it) gets no second one; any other text gets the tokenizer's special
tokens. :func:`prompt_template` is the identity recorded in every results file, so "training and
eval saw the same template" can be checked from the files alone.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import UserError
from .runfiles import sha256_text

PromptStyle = Literal["chat", "raw", "seed"]
PROMPT_STYLES = ("chat", "raw", "seed", "auto")
SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, then write the final answer "
    "as a number on its own last line in the form '#### <number>'."
)
RAW_TEMPLATE = "{system}\n\nQuestion: {question}\nAnswer:"
# The instruction of the published seed scripts, copied byte for byte from ``PROMPT`` in
# ``prepare_gsm8k.py`` of the public grpo_gsm8k repository (ishanjmukherjee/gsm8k-grpo, July
# 2025), which wrote ``PROMPT + " " + question`` into every train and eval row.
SEED_INSTRUCTION = (
    "You are a careful math tutor. Show concise reasoning, then write your final answer on its "
    "own line, prefixed by four hash marks. For example, if the final answer is 8, your last "
    "line should be #### 8."
)
SEED_TEMPLATE = SEED_INSTRUCTION + " {question}"

Message = dict[str, str]


def resolve_prompt_style(style: str, tokenizer: Any) -> PromptStyle:
    """``chat`` or ``raw``; ``auto`` is chat when the tokenizer has a chat template."""
    if style == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "raw"
    if style == "chat":
        return "chat"
    if style == "raw":
        return "raw"
    if style == "seed":
        return "seed"
    raise UserError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")


def chat_messages(question: str, system: str = SYSTEM_PROMPT) -> list[Message]:
    """The chat prompt: system instruction + the question as the user turn."""
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def raw_prompt(question: str) -> str:
    """The plain-text prompt for base models without a chat template."""
    return RAW_TEMPLATE.format(system=SYSTEM_PROMPT, question=question)


def seed_prompt(question: str) -> str:
    """The published seed prompt: their instruction, one space, the question."""
    return SEED_TEMPLATE.format(question=question)


def render_messages(messages: list[Message], tokenizer: Any, style: PromptStyle) -> str:
    """The exact text sent to the model for a conversation (system, user, assistant, ... user).

    raw: the system text, then ``Question:``/``Answer:`` pairs, ending with ``Answer:``.
    seed: the seed prompt of the first question; later turns follow, one per paragraph."""
    if style == "seed":
        said = [m["content"].strip() for m in messages if m["role"] != "system"]
        return "\n\n".join([seed_prompt(said[0]), *said[1:]]) if said else seed_prompt("")
    if style == "raw":
        system = next((m["content"] for m in messages if m["role"] == "system"), SYSTEM_PROMPT)
        turns: list[str] = []
        for m in messages:
            if m["role"] == "user":
                turns.append(f"Question: {m['content']}\nAnswer:")
            elif m["role"] == "assistant" and turns:
                turns[-1] += f" {m['content'].strip()}"
        return system + "\n\n" + "\n\n".join(turns)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # e.g. Gemma/Mistral templates raise on a system role
        instruction = next((m["content"] for m in messages if m["role"] == "system"), None)
        rest = [dict(m) for m in messages if m["role"] != "system"]
        if instruction and rest:
            rest[0]["content"] = f"{instruction}\n\n{rest[0]['content']}"
        text = tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)
    return str(text)


def render_prompt(question: str, tokenizer: Any, style: PromptStyle) -> str:
    """The exact text sent to the model for one GSM8K question."""
    if style == "raw":
        return raw_prompt(question)
    if style == "seed":
        return seed_prompt(question)
    return render_messages(chat_messages(question), tokenizer, style)


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, the same for every backend and the trainer.

    A text that already starts with the BOS token gets no second one; other texts get the
    tokenizer's special tokens."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def text_for_special_tokens(tokenizer: Any, text: str) -> str:
    """``text`` for a consumer that tokenizes *with* special tokens (TRL's trainer): the result
    tokenizes to exactly :func:`prompt_ids` of ``text`` (a leading BOS is left to the tokenizer)."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        stripped = text[len(bos) :]
        if list(tokenizer(stripped)["input_ids"]) == prompt_ids(tokenizer, text):
            return stripped
    return text


def prompt_template(style: PromptStyle, tokenizer: Any, system: str = SYSTEM_PROMPT) -> dict:
    """The template's identity, recorded in eval summaries and training configs (as
    lm-evaluation-harness does): style and sha256 of the system prompt and chat template; the
    seed style records its own instruction as the system prompt and the sha256 of
    :data:`SEED_TEMPLATE`."""
    chat_template = getattr(tokenizer, "chat_template", None) if style == "chat" else None
    identity = {
        "style": style,
        "system_prompt_sha256": sha256_text(SEED_INSTRUCTION if style == "seed" else system),
        "chat_template_sha256": sha256_text(str(chat_template)) if chat_template else None,
        "raw_template_sha256": sha256_text(RAW_TEMPLATE) if style == "raw" else None,
    }
    if style == "seed":  # only here, so the records of the other styles stay as they were
        identity["seed_template_sha256"] = sha256_text(SEED_TEMPLATE)
    return identity
