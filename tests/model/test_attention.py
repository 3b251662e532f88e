import pytest
import torch

from text2token.attention import probe_first_token_sensitivity, set_attention


def _first_hidden(model, ids, mask=None):
    with torch.no_grad():
        return model.trunk(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]


@pytest.mark.parametrize("with_padding", [False, True])
def test_later_token_changes_earlier_state_only_when_bidirectional(tiny_model, with_padding):
    ids_a = torch.tensor([[100, 200, 300, 400, 0]])
    ids_b = ids_a.clone()
    ids_b[0, 3] = 999  # change a *later* token
    mask = torch.tensor([[1, 1, 1, 1, 0]]) if with_padding else torch.ones_like(ids_a)
    set_attention(tiny_model.backbone, "causal")
    assert torch.allclose(_first_hidden(tiny_model, ids_a, mask), _first_hidden(tiny_model, ids_b, mask), atol=1e-6)
    set_attention(tiny_model.backbone, "bidirectional")
    diff = (_first_hidden(tiny_model, ids_a, mask) - _first_hidden(tiny_model, ids_b, mask)).abs().max()
    assert diff > 1e-4
    # padding stays masked in bidirectional mode: changing a pad token changes nothing
    ids_c = ids_a.clone()
    ids_c[0, 4] = 555
    if with_padding:
        assert torch.allclose(_first_hidden(tiny_model, ids_a, mask), _first_hidden(tiny_model, ids_c, mask), atol=1e-6)
    set_attention(tiny_model.backbone, "causal")
    assert probe_first_token_sensitivity(tiny_model.backbone) == 0.0


def test_bidirectional_model_embeddings_differ_and_reload(tiny_model_dir, tmp_path):
    from text2token import Text2TokenModel

    texts = ["one two three four", "a b"]
    causal = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", attention="causal", device="cpu")
    bidir = Text2TokenModel.from_pretrained(
        str(tiny_model_dir), pooling="mean", attention="bidirectional", device="cpu"
    )
    assert not torch.allclose(torch.tensor(causal.encode(texts)), torch.tensor(bidir.encode(texts)), atol=1e-4)
    bidir.save_pretrained(tmp_path / "m")
    again = Text2TokenModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert again.attention == "bidirectional" and again.backbone.config.is_causal is False
    assert torch.allclose(torch.tensor(again.encode(texts)), torch.tensor(bidir.encode(texts)), atol=1e-6)


def test_unknown_attention_mode(tiny_model):
    with pytest.raises(ValueError):
        set_attention(tiny_model.backbone, "sideways")


def _tiny(config_cls, **extra):
    kwargs = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    kwargs.update(extra)
    return config_cls(**kwargs)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3", "gemma3_text"])
def test_validated_families_switch_both_ways(family):
    """Every family listed as validated really honours the switch (random tiny models, real classes)."""
    from transformers import (
        AutoModelForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
        Qwen3Config,
    )

    from text2token.attention import VALIDATED_FAMILIES

    assert family in VALIDATED_FAMILIES
    cls = {
        "llama": LlamaConfig,
        "mistral": MistralConfig,
        "qwen2": Qwen2Config,
        "qwen3": Qwen3Config,
        "gemma3_text": Gemma3TextConfig,
    }[family]
    extra = {"head_dim": 8, "sliding_window": 4} if family == "gemma3_text" else {}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_tiny(cls, **extra)).eval()
    assert probe_first_token_sensitivity(model) == 0.0
    set_attention(model, "bidirectional")
    assert probe_first_token_sensitivity(model) > 0.0
    set_attention(model, "causal")
    assert probe_first_token_sensitivity(model) == 0.0
