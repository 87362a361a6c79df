"""Model resolution: the embedded GGUF alias, local folders, LoRA adapters, and the hub error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_gsm8k.models import ModelError, embedded_gguf_file, resolve_model


@pytest.fixture(scope="session")
def embedded() -> str:
    return resolve_model("smollm2-135m").path


def test_embedded_alias_is_a_plain_checkpoint(embedded: str) -> None:
    assert embedded_gguf_file() is not None
    config = json.loads((Path(embedded) / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert (Path(embedded) / "tokenizer_config.json").is_file()
    assert resolve_model("smollm2-135m").path == embedded  # converted once, then cached


def test_local_folders(embedded: str, tmp_path: Path) -> None:
    assert resolve_model(embedded).source == "local"
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_hub_failure_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network in tests
    with pytest.raises(ModelError, match=r"couldn't get 'nobody/no-such-model'.*local checkpoint"):
        resolve_model("nobody/no-such-model")


def test_lora_adapter_is_merged(embedded: str, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(embedded)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter_cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == embedded
    merged = resolve_model(str(tmp_path / "adapter"))
    assert merged.source == "lora-merged"
    reloaded = AutoModelForCausalLM.from_pretrained(merged.path)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = peft_model(ids).logits
        got = reloaded(ids).logits
    assert torch.allclose(expected, got, atol=1e-3, rtol=1e-3)
    with torch.no_grad(), peft_model.disable_adapter():
        assert not torch.allclose(peft_model(ids).logits, got, atol=1e-3, rtol=1e-3)
    assert resolve_model(str(tmp_path / "adapter")).path == merged.path  # cached by content


def test_broken_adapter_and_unwritable_cache_are_one_line(
    embedded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("[1, 2")
    with pytest.raises(ModelError, match=r"adapter_config.json: malformed JSON"):
        resolve_model(str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": ""}))
    with pytest.raises(ModelError, match="'base_model_name_or_path' is missing or empty"):
        resolve_model(str(adapter))
    # a valid adapter whose merge cannot be cached: the cache folder is under a file
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": embedded, "peft_type": "LORA"})
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("GRPO_GSM8K_CACHE", str(blocker / "cache"))
    with pytest.raises(ModelError, match=r"cache folder .*blocker/cache: cannot write.*GRPO_GSM8K"):
        resolve_model(str(adapter))
